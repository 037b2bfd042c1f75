"""Run the whole stack on one machine: Redis, the API and the workers.

Started by `make run`. Starts a Redis server under ./data/redis unless REDIS_URL
already responds, then the `web` process and WORKERS `worker` processes (default 2)
with the commands from the Procfile, and local storage under ./data/storage. A process
that exits is started again after a short back-off. Ctrl-C or SIGTERM stops
everything: SIGTERM, a second SIGTERM after 5 s, SIGKILL after 10 s.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from core.procfile import read_procfile  # noqa: E402

STOP_GRACE_SECONDS = 10
MAX_RESTART_DELAY_SECONDS = 30


@dataclass
class Managed:
    name: str
    command: str
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    log_prefix: str = field(default="")


def redis_responds(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1).ping())
    except (RedisError, OSError, ValueError):
        return False


def start_redis(url: str, data_dir: Path) -> subprocess.Popen:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed; run `make system-deps` first.")
    parsed = urlparse(url)
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            server,
            "--bind", parsed.hostname or "127.0.0.1",
            "--port", str(parsed.port or 6379),
            "--dir", str(data_dir),
            "--appendonly", "yes",
            "--save", "",
        ],
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not redis_responds(url):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"redis-server did not start on {url}")
        time.sleep(0.1)
    return process


def launch(managed: Managed, env: dict[str, str]) -> None:
    managed.process = subprocess.Popen(
        ["sh", "-c", f"exec {managed.command}"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    print(f"run_local: started {managed.name} (pid {managed.process.pid})", flush=True)


def stop_all(processes: list[subprocess.Popen]) -> None:
    """Stop every process: SIGTERM, a second SIGTERM, then SIGKILL.

    An RQ worker finishes its current job on the first SIGTERM and kills its work
    horse on the second (the horse runs in a process group of its own, so only the
    worker can reach it).
    """
    for sig in (signal.SIGTERM, signal.SIGTERM):
        live = [process for process in processes if process.poll() is None]
        for process in live:
            _signal_group(process, sig)
        _wait_all(live, STOP_GRACE_SECONDS / 2)
    for process in processes:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _wait_all(processes: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def main() -> None:
    env = dict(os.environ)
    env.setdefault("REDIS_URL", "redis://localhost:6379/0")
    env.setdefault("STORAGE_BACKEND", "local")
    env.setdefault("STORAGE_DIR", str(ROOT / "data" / "storage"))
    env.setdefault("LOG_JSON", "false")
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    worker_count = int(env.get("WORKERS", "2"))

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    owned: list[subprocess.Popen] = []
    if redis_responds(env["REDIS_URL"]):
        print(f"run_local: using the Redis at {env['REDIS_URL']}", flush=True)
    else:
        owned.append(start_redis(env["REDIS_URL"], ROOT / "data" / "redis"))
        print(f"run_local: started redis-server for {env['REDIS_URL']}", flush=True)

    commands = read_procfile()
    services = [Managed("web", commands["web"])]
    services += [
        Managed(f"worker-{index}", commands["worker"])
        for index in range(1, worker_count + 1)
    ]
    for managed in services:
        launch(managed, env)
    port = env.get("PORT", "8000")
    print(f"run_local: API on http://localhost:{port} (Ctrl-C stops)", flush=True)

    try:
        while not stopping:
            time.sleep(0.5)
            for managed in services:
                if managed.process is None or managed.process.poll() is None:
                    continue
                now = time.monotonic()
                if managed.next_start == 0.0:
                    delay = min(2**managed.restarts, MAX_RESTART_DELAY_SECONDS)
                    managed.next_start = now + delay
                    print(
                        f"run_local: {managed.name} exited with status "
                        f"{managed.process.returncode}; restarting in {delay} s",
                        flush=True,
                    )
                elif now >= managed.next_start:
                    managed.restarts += 1
                    managed.next_start = 0.0
                    launch(managed, env)
    finally:
        print("run_local: stopping", flush=True)
        # Workers first, while Redis still accepts their shutdown writes.
        stop_all([m.process for m in services if m.process is not None])
        stop_all(owned)


if __name__ == "__main__":
    main()
