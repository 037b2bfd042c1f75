"""Worker memory benchmark: resident memory of idle and busy workers.

Starts the API and two workers with the Procfile commands, then OCRs the 12-page
scanned corpus PDF (scan_12p.pdf). Meanwhile it samples, every 50 ms, the summed RSS
of each worker's process tree: the RQ worker, its work horse, and the pdftoppm and
tesseract processes it runs. These figures size worker containers and the memory
part of the cost per page. Merges its figures into docs/benchmarks.json.

    .venv/bin/python -m bench.worker_memory [--runs 3]
"""

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.measure import CORPUS, merge_into_report
from tests.support.servers import redis_server
from tests.support.stack import processes_in_sessions, running_stack

SAMPLE_SECONDS = 0.05


def rss_kib(pid: int) -> int:
    """Return the resident set size of `pid`, or 0 once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PeakSampler:
    """Samples the summed RSS of the process trees of `session_ids` in a thread."""

    def __init__(self, session_ids: set[int]) -> None:
        self.session_ids = session_ids
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            pids = processes_in_sessions(self.session_ids)
            self.peak_kib = max(self.peak_kib, sum(rss_kib(pid) for pid in pids))

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    pdf = CORPUS / "scan_12p.pdf"

    workdir = Path(tempfile.mkdtemp(prefix="pindai-memory-bench-"))
    peaks_mib = []
    seconds = []
    with (
        redis_server(workdir / "redis") as redis_url,
        running_stack(
            redis_url, workdir / "stack", 0, LOG_LEVEL="WARNING", MAX_PAGES="50"
        ) as stack,
    ):
        workers = {
            name: process.pid
            for name, process in stack.processes.items()
            if name != "web"
        }
        idle_mib = [rss_kib(pid) / 1024 for pid in workers.values()]
        for _ in range(arguments.runs):
            with PeakSampler(set(workers.values())) as sampler:
                started = time.perf_counter()
                body = stack.wait_for(stack.submit_ok(pdf), timeout_s=600)
                seconds.append(time.perf_counter() - started)
            if body["status"] != "finished":
                raise RuntimeError(f"the benchmark job did not finish: {body}")
            peaks_mib.append(sampler.peak_kib / 1024)
        api_mib = rss_kib(stack.processes["web"].pid) / 1024

    figures = {
        "document": pdf.name,
        "pages": body["page_count"],
        "workers": len(workers),
        "idle_worker_mib": [round(value, 1) for value in idle_mib],
        "busy_peak_both_workers_mib": [round(value, 1) for value in peaks_mib],
        "busy_peak_per_worker_mib_median": round(
            statistics.median(peaks_mib) / len(workers), 1
        ),
        "seconds": [round(value, 2) for value in seconds],
        "api_mib": round(api_mib, 1),
    }
    merge_into_report("worker_memory", figures)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
