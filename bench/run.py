"""pindai's benchmarks: one page, a 20-page document, fairness, and the API under load.

Every comparison is measured in the same run on the same machine, and reported as
medians. Writes docs/benchmarks.md and docs/bench_workers.png.

    make bench          # or: .venv/bin/python -m bench.run
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from redis import Redis

from bench.measure import (
    CORPUS,
    SCAN_12P_TRUTH,
    mean_cer,
    merge_into_report,
    run,
    time_runs,
    write_submit_body,
)
from tests.support.servers import redis_server
from tests.support.stack import Stack, stack_env

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGE_IMAGE = CORPUS / "8087_054.3B.png"
SMALL_PNG = ROOT / "tests" / "data" / "cases" / "ok_rgb.png"


@contextmanager
def stack(workdir: Path, redis_url: str, workers: int) -> Iterator[Stack]:
    Redis.from_url(redis_url).flushdb()
    root = workdir / f"stack-{workers}-{time.monotonic_ns()}"
    env = stack_env(
        redis_url,
        root,
        MAX_PAGES="300",
        MAX_UPLOAD_BYTES=str(200 * 1024 * 1024),
        LOG_LEVEL="WARNING",
    )
    running = Stack(env=env, log_dir=root / "logs", worker_count=workers)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def ocr_through_api(running: Stack, path: Path) -> dict:
    """Submit `path` and long-poll until the job ends; return the result body."""
    job_id = running.submit_ok(path)
    url = f"{running.base_url}/api/v1/ocr/result/{job_id}"
    while True:
        body = httpx.get(url, params={"wait": 30}, timeout=40).json()
        if body["status"] in ("finished", "failed"):
            return body


def bench_single_page(workdir: Path, redis_url: str, runs: int) -> dict:
    raw = {}
    for label, env in (
        ("default", {}),
        ("OMP_THREAD_LIMIT=1", {"OMP_THREAD_LIMIT": "1"}),
    ):
        raw[label] = time_runs(
            f"tesseract IMAGE - ({label})",
            runs,
            lambda env=env: run(["tesseract", str(PAGE_IMAGE), "-"], env),
        )
    best = min(raw.values(), key=lambda timing: timing.median)
    with stack(workdir, redis_url, workers=1) as running:
        ocr_through_api(running, PAGE_IMAGE)  # warm-up: imports, caches
        api = time_runs(
            "pindai submit + long-poll",
            runs,
            lambda: ocr_through_api(running, PAGE_IMAGE),
        )
    return {
        "raw": {label: timing.seconds for label, timing in raw.items()},
        "raw_best": best.name,
        "raw_best_median": best.median,
        "api": api.seconds,
        "api_median": api.median,
        "ratio": api.median / best.median,
    }


def twenty_page_pdf(workdir: Path) -> Path:
    """scan_12p.pdf followed by its first 8 pages: 20 scanned pages, mixed encodings."""
    first_eight = workdir / "first8.pdf"
    pages = workdir / "pages"
    pages.mkdir(exist_ok=True)
    run(
        [
            "pdfseparate",
            "-f",
            "1",
            "-l",
            "8",
            str(CORPUS / "scan_12p.pdf"),
            str(pages / "p%d.pdf"),
        ]
    )
    run(
        ["pdfunite", *[str(pages / f"p{n}.pdf") for n in range(1, 9)], str(first_eight)]
    )
    output = workdir / "scan_20p.pdf"
    run(["pdfunite", str(CORPUS / "scan_12p.pdf"), str(first_eight), str(output)])
    return output


def raw_sequential(pdf: Path, workdir: Path, omp: dict[str, str]) -> dict[int, str]:
    images = Path(tempfile.mkdtemp(dir=workdir))
    run(["pdftoppm", "-r", "300", "-png", str(pdf), str(images / "page")])
    texts = {}
    for number, image in enumerate(sorted(images.glob("page-*.png")), start=1):
        texts[number] = run(["tesseract", str(image), "-"], omp)
    shutil.rmtree(images)
    return texts


def ocrmypdf_sidecar(pdf: Path, workdir: Path, ocrmypdf: str) -> dict[int, str]:
    sidecar = workdir / "sidecar.txt"
    subprocess.run(
        [
            ocrmypdf, "--sidecar", str(sidecar), "-j", "2", "--force-ocr",
            "--output-type", "none", "--quiet", str(pdf), "-",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    pages = sidecar.read_text().split("\f")
    return {number: text for number, text in enumerate(pages, start=1)}


def bench_document(
    workdir: Path, redis_url: str, runs: int, ocrmypdf: str | None, omp: dict
) -> dict:
    pdf = twenty_page_pdf(workdir)
    truth = {
        **SCAN_12P_TRUTH,
        **{page + 12: SCAN_12P_TRUTH[page] for page in (3, 4, 5, 6, 7, 8)},
    }
    results: dict[str, dict] = {}

    texts: dict[int, str] = {}

    def raw_once() -> None:
        texts.update(raw_sequential(pdf, workdir, omp))

    timing = time_runs("raw sequential", runs, raw_once)
    results["raw sequential (pdftoppm -r 300, tesseract per page)"] = {
        "seconds": timing.seconds,
        "median": timing.median,
        "cer": mean_cer(texts, truth),
    }

    if ocrmypdf:
        sidecar: dict[int, str] = {}
        timing = time_runs(
            "ocrmypdf",
            runs,
            lambda: sidecar.update(ocrmypdf_sidecar(pdf, workdir, ocrmypdf)),
        )
        results["OCRmyPDF -j 2 --force-ocr --sidecar"] = {
            "seconds": timing.seconds,
            "median": timing.median,
            "cer": mean_cer(sidecar, truth),
        }

    for workers in (1, 2):
        with stack(workdir, redis_url, workers) as running:
            bodies: list[dict] = []
            timing = time_runs(
                f"pindai {workers} worker(s)",
                runs,
                lambda running=running, bodies=bodies: bodies.append(
                    ocr_through_api(running, pdf)
                ),
            )
        body = bodies[-1]
        page_texts = {page["page"]: page["text"] or "" for page in body["pages"]}
        results[f"pindai, {workers} worker{'s' if workers > 1 else ''}"] = {
            "seconds": timing.seconds,
            "median": timing.median,
            "cer": mean_cer(page_texts, truth),
            "status": body["status"],
            "dpi": [page["dpi"] for page in body["pages"]],
        }
    return {"pages": 20, "results": results}


def bench_fairness(workdir: Path, redis_url: str) -> dict:
    """Time a one-page job submitted right behind a 300-page document, on 2 workers."""
    big = workdir / "scan_300p.pdf"
    run(["pdfunite", *[str(CORPUS / "scan_12p.pdf")] * 25, str(big)])
    with stack(workdir, redis_url, workers=2) as running:
        big_id = running.submit_ok(big)
        deadline = time.monotonic() + 120
        while running.result(big_id).json()["status"] != "started":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(5)  # let the 300 page items reach the queue and start
        submitted = time.monotonic()
        small = ocr_through_api(running, SMALL_PNG)
        small_done = time.monotonic() - submitted
        big_body = running.result(big_id).json()
        httpx.delete(f"{running.base_url}/api/v1/ocr/jobs/{big_id}")
    return {
        "small_job_seconds": small_done,
        "small_job_status": small["status"],
        "big_pages_done_meanwhile": big_body["pages_done"],
        "big_page_count": big_body["page_count"],
    }


def bench_load(workdir: Path, redis_url: str, seconds: int, clients: int) -> dict:
    """Submits of a small PNG and result polls, `clients` connections in all."""
    boundary = "pindai-bench-boundary"
    body = workdir / "submit.body"
    write_submit_body(body, SMALL_PNG, boundary)
    with stack(workdir, redis_url, workers=2) as running:
        job_id = running.submit_ok(SMALL_PNG)
        running.wait_for(job_id)
        submit = subprocess.Popen(
            [
                "hey", "-z", f"{seconds}s", "-c", str(clients // 2), "-m", "POST",
                "-T", f"multipart/form-data; boundary={boundary}", "-D", str(body),
                "-o", "csv", f"{running.base_url}/api/v1/ocr/submit",
            ],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        poll = subprocess.Popen(
            [
                "hey", "-z", f"{seconds}s", "-c", str(clients - clients // 2),
                "-o", "csv", f"{running.base_url}/api/v1/ocr/result/{job_id}",
            ],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        outputs = {"submit": submit.communicate()[0], "poll": poll.communicate()[0]}
    return {name: summarize_hey(raw, seconds) for name, raw in outputs.items()}


def summarize_hey(raw: bytes, seconds: int) -> dict:
    """Summarize hey's per-request CSV: requests/s, p50, p99, non-2xx count."""
    lines = raw.decode().splitlines()[1:]
    latencies, errors = [], 0
    for line in lines:
        fields = line.split(",")
        latencies.append(float(fields[0]))
        if not fields[6].startswith("2"):
            errors += 1
    latencies.sort()

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="repetitions per method")
    parser.add_argument(
        "--ocrmypdf", default=shutil.which("ocrmypdf"), help="ocrmypdf executable"
    )
    parser.add_argument("--load-seconds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--single-page-only",
        action="store_true",
        help="measure only the one-page comparison and merge it into the report",
    )
    arguments = parser.parse_args()
    if arguments.single_page_only:
        workdir = Path(tempfile.mkdtemp(prefix="pindai-bench-"))
        with redis_server(workdir / "redis") as base_url:
            redis_url = base_url.rsplit("/", 1)[0] + "/5"
            figures = bench_single_page(workdir, redis_url, max(arguments.runs, 5))
        shutil.rmtree(workdir, ignore_errors=True)
        figures["measured"] = datetime.now(UTC).isoformat(timespec="seconds")
        merge_into_report("single_page", figures)
        print(json.dumps(figures, indent=2))
        return

    workdir = Path(tempfile.mkdtemp(prefix="pindai-bench-"))
    report: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}"
        ),
        "tesseract": run(["tesseract", "--version"]).splitlines()[0],
    }
    with redis_server(workdir / "redis") as base_url:
        redis_url = base_url.rsplit("/", 1)[0] + "/5"
        report["single_page"] = bench_single_page(
            workdir, redis_url, max(arguments.runs, 5)
        )
        best = report["single_page"]["raw_best"]
        omp = {"OMP_THREAD_LIMIT": "1"} if "OMP_THREAD_LIMIT=1" in best else {}
        report["document"] = bench_document(
            workdir, redis_url, arguments.runs, arguments.ocrmypdf, omp
        )
        report["fairness"] = bench_fairness(workdir, redis_url)
        report["load"] = bench_load(
            workdir, redis_url, arguments.load_seconds, arguments.clients
        )
    shutil.rmtree(workdir, ignore_errors=True)

    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
