"""Load with faults: 50 clients submitting for 60 s while a worker is killed every 10 s.

One of the two workers has every process killed with SIGKILL every 10 seconds and is
started again at once. After the load, every accepted job must end. The script
reports the submit error rate, how many jobs finished or failed, and how many were
lost (still queued or started when the queue is drained). Merges its figures into
docs/benchmarks.json.

    .venv/bin/python -m bench.load_faults
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from redis import Redis

from bench.measure import merge_into_report, write_submit_body
from tests.support.servers import redis_server
from tests.support.stack import Stack, processes_in_sessions, stack_env

ROOT = Path(__file__).resolve().parents[1]
SMALL_PNG = ROOT / "tests" / "data" / "cases" / "ok_rgb.png"


def kill_and_restart(
    stack: Stack, name: str, every_s: float, stop: threading.Event
) -> int:
    kills = 0
    while not stop.wait(every_s):
        for pid in processes_in_sessions({stack.processes[name].pid}):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stack.processes[name].wait()
        stack.restart(name)
        kills += 1
    return kills


def job_statuses(redis_url: str) -> Counter:
    redis = Redis.from_url(redis_url)
    statuses: Counter = Counter()
    for key in redis.scan_iter("pindai:job:*"):
        if key.count(b":") != 2:
            continue  # the pages hash of a job
        statuses[(redis.hget(key, "status") or b"missing").decode()] += 1
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.1, help="submits/s per client")
    parser.add_argument("--kill-every", type=float, default=10.0)
    arguments = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pindai-load-faults-"))
    boundary = "pindai-load-boundary"
    body = workdir / "submit.body"
    write_submit_body(body, SMALL_PNG, boundary)
    with redis_server(workdir / "redis") as redis_url:
        env = stack_env(redis_url, workdir / "stack", LOG_LEVEL="WARNING")
        stack = Stack(env=env, log_dir=workdir / "logs", worker_count=2)
        stack.start()
        stop = threading.Event()
        kills: list[int] = []
        killer = threading.Thread(
            target=lambda: kills.append(
                kill_and_restart(stack, "worker-1", arguments.kill_every, stop)
            )
        )
        try:
            killer.start()
            output = subprocess.run(
                [
                    "hey",
                    "-z",
                    f"{arguments.seconds}s",
                    "-c",
                    str(arguments.clients),
                    "-q",
                    str(arguments.rate),
                    "-m",
                    "POST",
                    "-T",
                    f"multipart/form-data; boundary={boundary}",
                    "-D",
                    str(body),
                    "-o",
                    "csv",
                    f"{stack.base_url}/api/v1/ocr/submit",
                ],
                capture_output=True,
                check=True,
            ).stdout.decode()
            stop.set()
            killer.join()
            codes = Counter(line.split(",")[6] for line in output.splitlines()[1:])
            drain_started = time.monotonic()
            while True:
                statuses = job_statuses(redis_url)
                running = statuses["queued"] + statuses["started"]
                if running == 0 or time.monotonic() - drain_started > 600:
                    break
                time.sleep(2)
            drained_in = time.monotonic() - drain_started
        finally:
            stop.set()
            stack.stop()

    submitted = sum(codes.values())
    result = {
        "seconds": arguments.seconds,
        "clients": arguments.clients,
        "worker_kills": kills[0] if kills else 0,
        "submits": submitted,
        "submit_status_codes": dict(codes),
        "submit_error_rate": 1 - codes.get("202", 0) / submitted if submitted else 0,
        "jobs_finished": statuses["finished"],
        "jobs_failed": statuses["failed"],
        "jobs_lost": statuses["queued"] + statuses["started"],
        "accepted_without_record": codes.get("202", 0) - sum(statuses.values()),
        "drained_in_s": round(drained_in, 1),
    }
    merge_into_report("load_with_faults", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
