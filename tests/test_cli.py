"""The installed `pindai` console script, run as a subprocess against live stacks."""

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from api.keys import entry_for, new_key
from tests.conftest import CASES, DATA
from tests.support.servers import free_port
from tests.support.stack import Stack, running_stack
from tests.support.text import character_error_rate, normalize

pytestmark = pytest.mark.integration

PINDAI = Path(sys.executable).parent / "pindai"
GROUND_TRUTH = DATA / "gt"
# The test page of scan_3p.pdf, re-rendered as a JPEG: one quick page to read.
TEST_PAGE = DATA / "pytesseract_test.jpg"
TEST_PAGE_TRUTH = GROUND_TRUTH / "phototest.gt.txt"
KEY = new_key()


def pindai(
    url: str, *args: str, api_key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PINDAI_")
    }
    env["PINDAI_URL"] = url
    if api_key is not None:
        env["PINDAI_API_KEY"] = api_key
    return subprocess.run(
        [str(PINDAI), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def log_records(stack: Stack, name: str = "web") -> list[dict]:
    lines = (stack.log_dir / f"{name}.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def api_text(stack: Stack, job_id: str) -> str:
    response = httpx.get(f"{stack.base_url}/api/v1/ocr/result/{job_id}/text")
    assert response.status_code == 200
    return response.text


@pytest.fixture(scope="module")
def keyed_stack(
    redis_base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """An API that requires a key and has no worker, so jobs stay queued."""
    root = tmp_path_factory.mktemp("keyed-stack")
    with running_stack(
        redis_base_url, root, 4, worker_count=0, API_KEYS=entry_for("cli", KEY)
    ) as stack:
        yield stack


def test_submit_wait_out_multipart(local_stack: Stack, tmp_path: Path) -> None:
    same_stem = tmp_path / "other" / "scan_3p.png"
    same_stem.parent.mkdir()
    shutil.copy(CASES / "ok_rgb.png", same_stem)
    out = tmp_path / "texts"

    run = pindai(
        local_stack.base_url,
        "submit",
        "--wait",
        "--out",
        str(out),
        str(DATA / "scan_3p.pdf"),
        str(TEST_PAGE),
        str(same_stem),
    )

    assert run.returncode == 0, run.stderr
    job_ids = run.stdout.split()
    assert len(job_ids) == 3
    assert sorted(path.name for path in out.iterdir()) == [
        "pytesseract_test.txt",
        "scan_3p-2.txt",
        "scan_3p.txt",
    ]
    assert run.stderr.count("uploaded through the API as multipart") == 3
    assert "presigned" not in run.stderr

    scan_text = (out / "scan_3p.txt").read_text()
    assert scan_text == api_text(local_stack, job_ids[0])
    assert "It was the year of Our Lord" in normalize(scan_text)
    assert "The quick brown dog jumped over the lazy fox." in normalize(scan_text)
    page_text = (out / "pytesseract_test.txt").read_text()
    assert character_error_rate(page_text, TEST_PAGE_TRUTH.read_text()) <= 0.05
    assert (out / "scan_3p-2.txt").read_text() == "INVOICE NUMBER 4721"


def test_submit_wait_out_presigned(s3_stack: Stack, tmp_path: Path) -> None:
    started = datetime.now(UTC)
    run = pindai(
        s3_stack.base_url,
        "submit",
        "--wait",
        "--out",
        str(tmp_path),
        "--idempotency-key",
        "cli-test-presigned",
        str(TEST_PAGE),
    )

    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    assert "uploaded to object storage by presigned URL" in run.stderr
    assert "multipart" not in run.stderr
    records = log_records(s3_stack)
    issued = [
        record["upload_id"]
        for record in records
        if record["message"] == "upload url issued"
    ]
    assert job_id in issued
    # Other tests share the stack: only requests made during this run count.
    submits = [
        record
        for record in records
        if record.get("path") == "/api/v1/ocr/submit"
        and record["message"] == "request started"
        and datetime.fromisoformat(record["ts"]) >= started
    ]
    assert submits == []
    text = (tmp_path / "pytesseract_test.txt").read_text()
    assert character_error_rate(text, TEST_PAGE_TRUTH.read_text()) <= 0.05
    assert text == api_text(s3_stack, job_id)


def test_submit_wait_prints_text(local_stack: Stack) -> None:
    run = pindai(local_stack.base_url, "submit", "--wait", str(CASES / "ok_rgb.png"))

    assert run.returncode == 0, run.stderr
    assert run.stdout == "INVOICE NUMBER 4721\n"


def test_submit_rejected_file(stack: Stack) -> None:
    run = pindai(
        stack.base_url,
        "submit",
        str(CASES / "text_renamed.png"),
        str(CASES / "zero_byte.png"),
        str(CASES / "ok_rgb.png"),
    )

    assert run.returncode == 1
    assert "text_renamed.png: rejected: unsupported_media_type" in run.stderr
    assert "zero_byte.png: rejected: empty_file" in run.stderr
    [job_id] = run.stdout.split()
    assert stack.wait_for(job_id)["status"] == "finished"


def test_submit_failed_job(local_stack: Stack) -> None:
    encrypted = CASES / "pdf_encrypted_user_password.pdf"

    run = pindai(local_stack.base_url, "submit", "--wait", str(encrypted))

    assert run.returncode == 1
    assert "failed: pdf_encrypted" in run.stderr
    assert run.stdout == ""


def test_submit_options_checked(local_stack: Stack) -> None:
    png = str(CASES / "ok_rgb.png")

    two_files = pindai(
        local_stack.base_url, "submit", "--idempotency-key", "k", png, png
    )
    out_without_wait = pindai(local_stack.base_url, "submit", "--out", "x", png)

    assert two_files.returncode == 2
    assert "--idempotency-key applies to one FILE" in two_files.stderr
    assert out_without_wait.returncode == 2
    assert "--out needs --wait" in out_without_wait.stderr


def test_status_of_finished_job(local_stack: Stack) -> None:
    submitted = pindai(local_stack.base_url, "submit", str(CASES / "ok_rgb.png"))
    job_id = submitted.stdout.strip()
    local_stack.wait_for(job_id)

    plain = pindai(local_stack.base_url, "status", job_id)
    as_json = pindai(local_stack.base_url, "status", job_id, "--json")

    assert submitted.returncode == 0, submitted.stderr
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split() == ["job", job_id, "status", "finished", "pages", "1/1"]
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["status"] == "finished"
    assert body["page_count"] == 1
    assert body["text"] == "INVOICE NUMBER 4721"


def test_status_of_unknown_job(local_stack: Stack) -> None:
    run = pindai(local_stack.base_url, "status", "no-such-job")

    assert run.returncode == 1
    assert "job_not_found" in run.stderr


def test_health_reports_workers(local_stack: Stack) -> None:
    run = pindai(local_stack.base_url, "health")

    assert run.returncode == 0, run.stderr
    rows = dict(line.rsplit(None, 1) for line in run.stdout.splitlines())
    assert rows["status"] == "ok"
    assert rows["workers"] == "2"
    queues = sorted(label for label in rows if label.startswith("queue "))
    assert queues == ["queue default", "queue pages", "queue webhooks"]


def test_unreachable_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    health = pindai(url, "health")
    submit = pindai(url, "submit", str(CASES / "ok_rgb.png"))

    assert health.returncode == 3
    assert f"Cannot reach the pindai API at {url}" in health.stderr
    assert submit.returncode == 3
    assert "Traceback" not in submit.stderr


def test_api_key_sent_never_shown(keyed_stack: Stack) -> None:
    png = str(CASES / "ok_rgb.png")

    anonymous = pindai(keyed_stack.base_url, "submit", png)
    submitted = pindai(keyed_stack.base_url, "submit", png, api_key=KEY)
    job_id = submitted.stdout.strip()
    status = pindai(keyed_stack.base_url, "status", job_id, api_key=KEY)
    wrong = pindai(keyed_stack.base_url, "status", job_id, api_key=new_key())

    assert anonymous.returncode == 1
    assert "unauthorized" in anonymous.stderr
    assert submitted.returncode == 0, submitted.stderr
    assert status.returncode == 0, status.stderr
    assert "queued" in status.stdout
    assert wrong.returncode == 1
    assert "unauthorized" in wrong.stderr
    for run in (anonymous, submitted, status, wrong):
        assert KEY not in run.stdout + run.stderr


class BusyOnceHandler(BaseHTTPRequestHandler):
    """Return 429 with Retry-After: 0 to the first request and a job to later ones."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        if len(self.seen) == 1:
            body = {
                "error": {"code": "rate_limited", "message": "busy", "request_id": ""}
            }
            self.reply(429, body, {"Retry-After": "0"})
        else:
            body = {"job_id": "j1", "status": "queued", "pages_done": 0}
            self.reply(200, body, {})

    def reply(self, status: int, body: dict, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_status_retries_after_429() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BusyOnceHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        run = pindai(url, "status", "j1", api_key=KEY)
    finally:
        server.shutdown()
        server.server_close()

    assert run.returncode == 0, run.stderr
    assert "HTTP 429" in run.stderr
    assert "status  queued" in run.stdout
    assert len(BusyOnceHandler.seen) == 2
    for path, authorization in BusyOnceHandler.seen:
        assert path == "/api/v1/ocr/result/j1"
        assert authorization == f"Bearer {KEY}"
    assert KEY not in run.stdout + run.stderr
