"""Throwaway Redis, S3 (moto) and webhook receiver servers on loopback ports."""

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def redis_server(data_dir: Path, *, appendonly: bool = False) -> Iterator[str]:
    """Run a redis-server on a free port and yield its URL (database 0)."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not installed; run `make system-deps`")
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            executable,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "yes" if appendonly else "no",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_redis(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_redis(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    client = Redis.from_url(url, socket_connect_timeout=0.5)
    while True:
        try:
            if client.ping():
                return
        except (RedisError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start on {url}")
        time.sleep(0.05)


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Run moto's S3 emulation as an HTTP server on loopback and yield its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """An HTTP server on loopback that records POSTs and replies with set statuses.

    Replies take their status from `statuses` in order, then 200 once it is used up.
    With `drip_seconds`, the reply's header lines come that far apart; with
    `body_bytes`, the reply has a body of that size.
    """

    def __init__(
        self,
        statuses: list[int] | None = None,
        *,
        drip_seconds: float = 0,
        body_bytes: int = 0,
    ) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[ReceivedRequest] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        ReceivedRequest(self.path, dict(self.headers.items()), body)
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if drip_seconds:
                    # One header line at a time: each read is quick, the whole
                    # response is not.
                    self.wfile.write(f"HTTP/1.1 {status} OK\r\n".encode())
                    for number in range(30):
                        time.sleep(drip_seconds)
                        try:
                            self.wfile.write(f"X-Drip-{number}: 1\r\n".encode())
                            self.wfile.flush()
                        except OSError:
                            return
                    return
                self.send_response(status)
                self.send_header("Content-Length", str(body_bytes))
                self.end_headers()
                block = b"x" * 65536
                remaining = body_bytes
                try:
                    while remaining > 0:
                        self.wfile.write(block[:remaining])
                        remaining -= len(block)
                except OSError:
                    return

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout_s: float = 60) -> list[ReceivedRequest]:
        """Return the first `count` requests once they have arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return self.requests[:count]
            time.sleep(0.1)
        raise AssertionError(
            f"{len(self.requests)} webhook request(s) arrived, expected {count}"
        )
