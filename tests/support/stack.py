"""The API and RQ workers as real processes, started with the Procfile commands."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis import Redis
from rq import Worker

from core.procfile import read_procfile
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("finished", "failed")


@dataclass
class Stack:
    """One API process and `worker_count` worker processes sharing an environment."""

    env: dict[str, str]
    log_dir: Path
    worker_count: int = 2
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tmp_dir(self) -> Path:
        return Path(self.env["TMPDIR"])

    def start(self) -> None:
        commands = read_procfile()
        self.env["PORT"] = str(self.port)
        self.env["PATH"] = (
            f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"
        )
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._launch("web", commands["web"])
        for index in range(1, self.worker_count + 1):
            self._launch(f"worker-{index}", commands["worker"])
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def restart(self, name: str) -> None:
        """Start process `name` again with the Procfile command of its type."""
        kind = "web" if name == "web" else "worker"
        self._launch(name, read_procfile()[kind])

    def _launch(self, name: str, command: str) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            ["sh", "-c", f"exec {command}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def _wait_until_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited early; see {self.log_dir}")
            if self._api_ready() and self._workers_listening():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the stack did not become ready; see {self.log_dir}")

    def _api_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.base_url}/api/v1/health/ready")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def _workers_listening(self) -> bool:
        """True once every worker has registered with Redis, as RQ does on start."""
        connection = Redis.from_url(self.env["REDIS_URL"])
        try:
            return Worker.count(connection=connection) >= self.worker_count
        finally:
            connection.close()

    def stop(self) -> None:
        """Kill every process of the stack, work horses and their children included."""
        sessions = {process.pid for process in self.processes.values()}
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pid in processes_in_sessions(sessions):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()

    def leftovers(self, wait_s: float = 5) -> list[str]:
        """Return what outlived the jobs: temp files, job directories, tool processes.

        Waits up to `wait_s` for them to go, since pages of a cancelled or failed job
        may still be passing through a worker for a moment.
        """
        deadline = time.monotonic() + wait_s
        while True:
            files = [str(path) for path in self.tmp_dir.rglob("*") if path.is_file()]
            directories = [str(path) for path in self.tmp_dir.glob("pindai-job-*")]
            found = files + directories + self.tool_processes()
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def tool_processes(self) -> list[str]:
        """Return the OCR tool processes still running under this stack's workers."""
        return tool_processes({process.pid for process in self.processes.values()})

    def worker_pids(self) -> dict[str, set[int]]:
        """Return the live processes of each worker: itself, its horse, their tools."""
        result = {}
        for name, process in self.processes.items():
            if name.startswith("worker"):
                result[name] = set(processes_in_sessions({process.pid}))
        return result

    # Client helpers

    def submit(
        self,
        path: Path,
        *,
        filename: str | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Submit `path` (or `content` under its name) with OCR `options` as fields."""
        data = content if content is not None else path.read_bytes()
        files = {"file": (filename or path.name, data, "application/octet-stream")}
        return httpx.post(
            f"{self.base_url}/api/v1/ocr/submit",
            files=files,
            data=options,
            headers=headers,
            timeout=60,
        )

    def post_files(self, files: dict) -> httpx.Response:
        """Submit a multipart body built from httpx-style `files`."""
        return httpx.post(f"{self.base_url}/api/v1/ocr/submit", files=files, timeout=60)

    def submit_ok(self, path: Path, **options: Any) -> str:
        response = self.submit(path, **options)
        assert response.status_code == 202, response.text
        return response.json()["job_id"]

    def result(
        self, job_id: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.get(
            f"{self.base_url}/api/v1/ocr/result/{job_id}", headers=headers, timeout=30
        )

    def wait_for(
        self,
        job_id: str,
        timeout_s: float = 120,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends; return its last result body."""
        deadline = time.monotonic() + timeout_s
        while True:
            body = self.result(job_id, headers).json()
            if body.get("status") in TERMINAL:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} did not end in {timeout_s} s: {body}"
                )
            time.sleep(0.2)


def processes_in_sessions(session_ids: set[int]) -> list[int]:
    """Return the pids of all live processes whose session id is in `session_ids`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getsid(pid) in session_ids:
                found.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def tool_processes(session_ids: set[int] | None = None) -> list[str]:
    """Return the names of live tesseract, pdftoppm or pdfinfo processes.

    Only processes in `session_ids` count (by default this test process's session),
    so that other programs on the machine cannot fail a test.
    """
    sessions = session_ids if session_ids is not None else {os.getsid(0)}
    names = []
    for pid in processes_in_sessions(sessions):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if name in ("tesseract", "pdftoppm", "pdfinfo", "pdfimages") and state != "Z":
            names.append(name)
    return names


def stack_env(redis_url: str, root: Path, **overrides: str) -> dict[str, str]:
    """Return the environment of a stack: this process's, minus pindai settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STORAGE_", "S3_", "MAX_", "PAGE_", "OCR_", "RQ_"))
    }
    env.update(
        REDIS_URL=redis_url,
        STORAGE_BACKEND="local",
        STORAGE_DIR=str(root / "storage"),
        TMPDIR=str(root / "tmp"),
        LOG_JSON="true",
        LOG_LEVEL="INFO",
        # The tests poll fast and submit in bursts from one address.
        RATE_LIMIT_PER_MINUTE="0",
        MAX_ACTIVE_JOBS="0",
    )
    env.update(overrides)
    return env


@contextlib.contextmanager
def running_stack(
    redis_base_url: str,
    root: Path,
    database: int,
    *,
    worker_count: int = 2,
    **overrides: str,
) -> Iterator[Stack]:
    """Start a stack on Redis database `database` under `root`; stop it on exit."""
    url = redis_base_url.rsplit("/", 1)[0] + f"/{database}"
    stack = Stack(
        env=stack_env(url, root, **overrides),
        log_dir=root / "logs",
        worker_count=worker_count,
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
