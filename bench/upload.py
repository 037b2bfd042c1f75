"""Upload benchmark: a 500 MB file through the API into S3, against plain boto3.

Measures the API process's peak RSS growth during the upload (VmHWM minus the RSS
before it) and its throughput as a ratio to boto3's `upload_file` of the same file to
the same endpoint, both in the same run. The endpoint is moto's S3 server in its own
process on loopback. Merges its figures into docs/benchmarks.json.

    .venv/bin/python -m bench.upload [--megabytes 500]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
from redis import Redis

from bench.measure import merge_into_report
from tests.support.servers import free_port, redis_server
from tests.support.stack import Stack, stack_env

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "pindai-bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
CHUNK = 1024 * 1024


def make_file(path: Path, megabytes: int) -> None:
    png = (ROOT / "tests" / "data" / "cases" / "ok_rgb.png").read_bytes()
    with path.open("wb") as file:
        file.write(png)
        block = bytes(range(256)) * (CHUNK // 256)
        for _ in range(megabytes):
            file.write(block)


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(field)


def multipart_body(path: Path, boundary: str) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def upload_through_api(stack: Stack, path: Path) -> tuple[float, int]:
    """Return (seconds, peak RSS growth in KiB) of one submit of `path`."""
    pid = api_pid(stack)
    # VmHWM is the peak since start; clearing it makes it the peak of this upload.
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = rss_kib(pid, "VmRSS")
    boundary = "pindai-upload-bench"
    started = time.perf_counter()
    response = httpx.post(
        f"{stack.base_url}/api/v1/ocr/submit",
        content=multipart_body(path, boundary),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, rss_kib(pid, "VmHWM") - before


def empty_bucket(client) -> None:
    """Delete every object, so moto keeps at most one run's files in memory."""
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])


def api_pid(stack: Stack) -> int:
    return stack.processes["web"].pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pindai-upload-bench-"))
    source = workdir / "big.png"
    make_file(source, arguments.megabytes)
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            **{name.lower(): value for name, value in CREDENTIALS.items()},
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        boto_times = []
        api_times = []
        growth = []
        with redis_server(workdir / "redis") as redis_url:
            env = stack_env(
                redis_url,
                workdir / "stack",
                STORAGE_BACKEND="s3",
                S3_BUCKET=BUCKET,
                S3_ENDPOINT_URL=endpoint,
                S3_REGION="us-east-1",
                S3_ADDRESSING_STYLE="path",
                MAX_UPLOAD_BYTES=str((arguments.megabytes + 10) * CHUNK),
                LOG_LEVEL="WARNING",
                **CREDENTIALS,
            )
            stack = Stack(env=env, log_dir=workdir / "logs", worker_count=0)
            stack.start()
            try:
                for run in range(arguments.runs):
                    started = time.perf_counter()
                    client.upload_file(str(source), BUCKET, f"boto3/{run}")
                    boto_times.append(time.perf_counter() - started)
                    seconds, kib = upload_through_api(stack, source)
                    api_times.append(seconds)
                    growth.append(kib)
                    Redis.from_url(redis_url).flushdb()
                    empty_bucket(client)
            finally:
                stack.stop()
    finally:
        moto.terminate()
        moto.wait()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)

    size_mb = arguments.megabytes
    result = {
        "megabytes": size_mb,
        "boto3_upload_file_s": boto_times,
        "api_submit_s": api_times,
        "api_peak_rss_growth_mib": [kib / 1024 for kib in growth],
        "throughput_ratio": statistics.median(boto_times)
        / statistics.median(api_times),
        "api_mb_per_s": size_mb / statistics.median(api_times),
        "boto3_mb_per_s": size_mb / statistics.median(boto_times),
    }
    merge_into_report("upload", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
