"""Fault injection: Redis restarted and the bucket unreachable while jobs run.

Every scenario ends with every job terminal and nothing left behind. Slow, so it runs
with `make test-faults`.
"""

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError

from tests.conftest import CASES, DATA, S3_CREDENTIALS, s3_client
from tests.support.servers import free_port
from tests.support.stack import Stack, stack_env

pytestmark = pytest.mark.faults


class RestartableRedis:
    """A redis-server with append-only persistence on a fixed port and directory."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if Redis.from_url(self.url, socket_connect_timeout=0.5).ping():
                    return
            except (RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_outage_stack(tmp_path: Path) -> Iterator[tuple[Stack, RestartableRedis]]:
    redis = RestartableRedis(tmp_path / "redis")
    redis.start()
    stack = Stack(env=stack_env(redis.url, tmp_path), log_dir=tmp_path / "logs")
    stack.start()
    yield stack, redis
    stack.stop()
    redis.stop()


def test_redis_restart_during_job(
    redis_outage_stack: tuple[Stack, RestartableRedis], tmp_path: Path
) -> None:
    stack, redis = redis_outage_stack
    pdf = tmp_path / "six.pdf"
    subprocess.run(
        ["pdfunite", str(DATA / "scan_3p.pdf"), str(DATA / "scan_3p.pdf"), str(pdf)],
        check=True,
    )
    job_id = stack.submit_ok(pdf)
    deadline = time.monotonic() + 60
    while stack.result(job_id).json()["pages_done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    redis.stop()
    down_submit = stack.submit(CASES / "ok_rgb.png")
    down_result = stack.result(job_id)
    down_ready = httpx.get(f"{stack.base_url}/api/v1/health/ready")
    time.sleep(5)
    redis.start()

    assert down_submit.status_code == 503
    assert down_submit.json()["error"]["code"] == "queue_unavailable"
    assert int(down_submit.headers["retry-after"]) > 0
    assert down_result.status_code == 503
    assert down_ready.status_code == 503
    body = stack.wait_for(job_id, timeout_s=150)
    assert body["status"] in ("finished", "failed")
    assert body["pages_done"] == 6
    assert stack.submit(CASES / "ok_rgb.png").status_code == 202
    for name, process in stack.processes.items():
        assert process.poll() is None, f"{name} exited during the outage"
    assert stack.leftovers(wait_s=15) == []


class StoppableMoto:
    """moto's S3 server as a separate process, so that it can be stopped mid-job."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import sys

        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def test_bucket_unreachable(redis_base_url: str, tmp_path: Path) -> None:
    moto = StoppableMoto()
    moto.start()
    s3_client(moto.url).create_bucket(Bucket="outage")
    url = redis_base_url.rsplit("/", 1)[0] + "/6"
    Redis.from_url(url).flushdb()
    env = stack_env(
        url,
        tmp_path,
        STORAGE_BACKEND="s3",
        S3_BUCKET="outage",
        S3_ENDPOINT_URL=moto.url,
        S3_REGION="us-east-1",
        S3_ADDRESSING_STYLE="path",
        **S3_CREDENTIALS,
    )
    stack = Stack(env=env, log_dir=tmp_path / "logs")
    stack.start()
    try:
        job_id = stack.submit_ok(DATA / "scan_3p.pdf")
        moto.stop()
        refused = stack.submit(CASES / "ok_rgb.png")
        ready = httpx.get(f"{stack.base_url}/api/v1/health/ready")
        body = stack.wait_for(job_id, timeout_s=120)
        leftovers = stack.leftovers(wait_s=15)
    finally:
        stack.stop()
        moto.stop()

    assert leftovers == []
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "storage_unavailable"
    assert ready.status_code == 503
    assert body["status"] in ("finished", "failed")
    if body["status"] == "failed":
        assert body["error"]["code"] == "storage_unavailable"
    else:
        assert body["partial"] is True
        codes = {page["error"]["code"] for page in body["pages"] if page["error"]}
        assert codes == {"storage_unavailable"}


@pytest.fixture
def tiny_tmp(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, far too small for a rendered 300-dpi page (8 MB)."""
    mount_point = tmp_path / "tiny-tmp"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_worker_tmp_full(redis_base_url: str, tmp_path: Path, tiny_tmp: Path) -> None:
    url = redis_base_url.rsplit("/", 1)[0] + "/7"
    Redis.from_url(url).flushdb()
    env = stack_env(url, tmp_path, TMPDIR=str(tiny_tmp))
    stack = Stack(env=env, log_dir=tmp_path / "logs")
    stack.start()
    try:
        job_id = stack.submit_ok(DATA / "scan_3p.pdf")
        body = stack.wait_for(job_id, timeout_s=120)
        small = stack.wait_for(stack.submit_ok(CASES / "ok_rgb.png"), timeout_s=60)
        alive = [process.poll() is None for process in stack.processes.values()]
    finally:
        stack.stop()

    assert body["status"] in ("finished", "failed")
    failed_pages = [page for page in body["pages"] if page["error"]]
    assert failed_pages
    for page in failed_pages:
        assert page["error"]["code"] == "internal_error"
        assert "temporary disk space" in page["error"]["message"]
    assert small["status"] == "finished"
    assert all(alive)
    assert [path for path in tiny_tmp.rglob("*") if path.is_file()] == []
