"""End to end through real processes: the API and RQ workers started from the Procfile,
a real redis-server, Tesseract and poppler, on local storage and on moto's S3 server.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from redis import Redis

from tests.conftest import CASES, DATA, s3_client
from tests.support.stack import Stack
from tests.support.text import character_error_rate

pytestmark = pytest.mark.integration

GROUND_TRUTH = DATA / "gt"


def assert_clean(stack: Stack) -> None:
    """No job directory, temporary file or OCR tool process may outlive a job."""
    assert stack.leftovers() == []


def unite(tmp_path: Path, name: str, *parts: Path) -> Path:
    output = tmp_path / name
    subprocess.run(["pdfunite", *map(str, parts), str(output)], check=True)
    return output


@pytest.mark.parametrize(
    ("case", "expected"),
    [("ok_rgb.png", "INVOICE NUMBER 4721"), ("ok_rgb.jpg", "RECEIPT TOTAL 98")],
)
def test_image_finishes(stack: Stack, case: str, expected: str) -> None:
    job_id = stack.submit_ok(CASES / case)

    body = stack.wait_for(job_id)

    assert body["status"] == "finished", body
    assert body["text"] == expected
    [page] = body["pages"]
    assert page["page"] == 1
    assert page["state"] == "done"
    assert page["text"] == expected
    assert page["error"] is None
    assert page["duration_ms"] >= 0
    streamed = httpx.get(f"{stack.base_url}{body['text_url']}")
    assert streamed.status_code == 200
    assert streamed.text == expected
    assert body["page_count"] == 1
    assert body["pages_done"] == 1
    assert body["partial"] is False
    assert body["error"] is None
    assert body["duration_ms"] >= 0
    assert "\f" not in body["text"]
    assert_clean(stack)


def test_scanned_pdf_matches_ground_truth(stack: Stack) -> None:
    """Three scanned pages (147, 300 and 200 dpi) from public OCR test sets."""
    job_id = stack.submit_ok(DATA / "scan_3p.pdf")

    body = stack.wait_for(job_id)

    assert body["status"] == "finished", body
    assert body["page_count"] == 3
    assert [page["page"] for page in body["pages"]] == [1, 2, 3]
    references = {
        1: ("lowres_72dpi_page.gt.txt", 0.02),
        2: ("8087_054.3B.gt.txt", 0.15),
        3: ("phototest.gt.txt", 0.02),
    }
    for page in body["pages"]:
        name, limit = references[page["page"]]
        reference = (GROUND_TRUTH / name).read_text()
        assert character_error_rate(page["text"], reference) <= limit, page["page"]
    assert body["text"] == "\n\n".join(page["text"] for page in body["pages"])
    assert_clean(stack)


def test_pages_spread_over_workers(local_stack: Stack, tmp_path: Path) -> None:
    pdf = unite(tmp_path, "six.pdf", DATA / "scan_3p.pdf", DATA / "scan_3p.pdf")
    job_id = local_stack.submit_ok(pdf)

    body = local_stack.wait_for(job_id)

    assert body["status"] == "finished"
    assert body["page_count"] == 6
    redis = Redis.from_url(local_stack.env["REDIS_URL"])
    workers = {
        redis.hget(f"rq:job:{job_id}-p{page:05d}", "worker_name")
        for page in range(1, 7)
    }
    assert len(workers) == 2, workers
    assert body["pages"][0]["dpi"] == 150
    assert body["pages"][1]["dpi"] == 300
    assert body["pages"][2]["dpi"] == 200
    assert_clean(local_stack)


def test_progress_while_running(local_stack: Stack, tmp_path: Path) -> None:
    pdf = unite(tmp_path, "nine.pdf", *[DATA / "scan_3p.pdf"] * 3)
    job_id = local_stack.submit_ok(pdf)

    deadline = time.monotonic() + 60
    while True:
        body = local_stack.result(job_id).json()
        if body["status"] == "started" and 0 < body["pages_done"] < 9:
            break
        assert body["status"] != "finished", "no running state was observed"
        assert time.monotonic() < deadline
        time.sleep(0.05)

    states = [page["state"] for page in body["pages"]]
    assert len(states) == 9
    assert "pending" in states
    assert states.count("done") >= 1
    assert body["text"] is None
    assert body["deadline_at"] > body["started_at"]
    done = next(page for page in body["pages"] if page["state"] == "done")
    assert done["text"]
    one = httpx.get(
        f"{local_stack.base_url}/api/v1/ocr/result/{job_id}/pages/{done['page']}"
    )
    assert one.status_code == 200
    assert one.json()["text"] == done["text"]
    partial_text = httpx.get(f"{local_stack.base_url}{body['text_url']}")
    assert partial_text.headers["x-job-status"] == "started"
    assert done["text"] in partial_text.text

    finished = local_stack.wait_for(job_id)
    full = httpx.get(f"{local_stack.base_url}{finished['text_url']}")
    assert full.status_code == 200
    assert full.headers["content-type"].startswith("text/plain")
    assert full.text == finished["text"]
    missing = httpx.get(f"{local_stack.base_url}/api/v1/ocr/result/{job_id}/pages/10")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "page_not_found"


def test_long_poll_returns_at_end(local_stack: Stack) -> None:
    job_id = local_stack.submit_ok(CASES / "ok_rgb.png")

    started = time.monotonic()
    response = httpx.get(
        f"{local_stack.base_url}/api/v1/ocr/result/{job_id}",
        params={"wait": 20},
        timeout=30,
    )

    assert response.json()["status"] == "finished"
    assert time.monotonic() - started < 5


def test_long_poll_times_out(local_stack: Stack) -> None:
    job_id = local_stack.submit_ok(CASES / "png_dense_text_timeout.png")

    started = time.monotonic()
    response = httpx.get(
        f"{local_stack.base_url}/api/v1/ocr/result/{job_id}",
        params={"wait": 1.5},
        timeout=30,
    )

    elapsed = time.monotonic() - started
    assert response.json()["status"] in ("queued", "started")
    assert 1.4 < elapsed < 4
    bad = httpx.get(
        f"{local_stack.base_url}/api/v1/ocr/result/{job_id}", params={"wait": 31}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_request"
    local_stack.wait_for(job_id)


def stored_keys(stack: Stack, job_id: str) -> list[str]:
    """List the job's objects in the stack's storage, local directory or bucket."""
    prefix = f"jobs/{job_id}/"
    if stack.env["STORAGE_BACKEND"] == "s3":
        listing = s3_client(stack.env["S3_ENDPOINT_URL"]).list_objects_v2(
            Bucket=stack.env["S3_BUCKET"], Prefix=prefix
        )
        return [item["Key"] for item in listing.get("Contents", [])]
    root = Path(stack.env["STORAGE_DIR"]) / prefix
    if not root.exists():
        return []
    return [str(path) for path in root.rglob("*") if path.is_file()]


def test_cancel_running_job(local_stack: Stack, tmp_path: Path) -> None:
    pdf = unite(tmp_path, "twelve.pdf", *[DATA / "scan_3p.pdf"] * 4)
    job_id = local_stack.submit_ok(pdf)
    deadline = time.monotonic() + 60
    while local_stack.result(job_id).json()["pages_done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    cancelled = httpx.delete(f"{local_stack.base_url}/api/v1/ocr/jobs/{job_id}")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "failed"
    assert cancelled.json()["error"]["code"] == "cancelled"
    time.sleep(3)
    body = local_stack.result(job_id).json()
    assert body["status"] == "failed"
    assert body["pages_done"] < 12
    assert stored_keys(local_stack, job_id) == []

    states = {page["state"] for page in body["pages"]}
    assert "pending" not in states
    for page in body["pages"]:
        assert page["text"] is None
        assert page["state"] == "done" or page["error"]["code"] == "cancelled"
    one = httpx.get(f"{local_stack.base_url}/api/v1/ocr/result/{job_id}/pages/1")
    assert one.status_code == 200
    text = httpx.get(f"{local_stack.base_url}{body['text_url']}")
    assert text.status_code == 200
    assert text.text == ""

    deleted = httpx.delete(f"{local_stack.base_url}/api/v1/ocr/jobs/{job_id}")
    assert deleted.status_code == 204
    assert local_stack.result(job_id).status_code == 404
    assert_clean(local_stack)


def test_delete_finished_job(stack: Stack) -> None:
    job_id = stack.submit_ok(CASES / "ok_rgb.png")
    stack.wait_for(job_id)
    assert len(stored_keys(stack, job_id)) == 3  # source, page text, full text

    response = httpx.delete(f"{stack.base_url}/api/v1/ocr/jobs/{job_id}")

    assert response.status_code == 204
    assert stored_keys(stack, job_id) == []
    gone = stack.result(job_id)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "job_not_found"
    again = httpx.delete(f"{stack.base_url}/api/v1/ocr/jobs/{job_id}")
    assert again.status_code == 404


def test_status_moves_forward(local_stack: Stack) -> None:
    response = local_stack.submit(DATA / "scan_3p.pdf")
    assert response.json()["status"] == "queued"
    job_id = response.json()["job_id"]

    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        result = local_stack.result(job_id)
        status = result.json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in ("finished", "failed"):
            break
        assert int(result.headers["retry-after"]) >= 1
        time.sleep(0.05)

    order = ["queued", "started", "finished"]
    assert seen == sorted(seen, key=order.index)
    assert seen[-2:] == ["started", "finished"]


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("pdf_header_then_garbage.pdf", "pdf_corrupt"),
        ("pdf_truncated_half.pdf", "pdf_corrupt"),
        ("pdf_zero_pages.pdf", "pdf_corrupt"),
        ("pdf_encrypted_user_password.pdf", "pdf_encrypted"),
        ("pdf_25_pages.pdf", "too_many_pages"),
        ("png_bomb_30000x30000.png", "image_too_large"),
        ("jpg_truncated.jpg", "image_corrupt"),
    ],
)
def test_bad_document_fails(stack: Stack, case: str, code: str) -> None:
    job_id = stack.submit_ok(CASES / case)

    body = stack.wait_for(job_id)

    assert body["status"] == "failed", body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["text"] is None
    assert body["finished_at"] is not None
    assert_clean(stack)


def test_21_pages_refused_before_ocr(local_stack: Stack, tmp_path: Path) -> None:
    pdf = unite(
        tmp_path, "21.pdf", CASES / "pdf_20_pages.pdf", CASES / "ok_vector_1page.pdf"
    )
    job_id = local_stack.submit_ok(pdf)

    body = local_stack.wait_for(job_id)

    assert body["status"] == "failed"
    assert body["error"]["code"] == "too_many_pages"
    assert "21 pages" in body["error"]["message"]
    assert body["pages_done"] == 0


def test_owner_password_pdf_finishes(local_stack: Stack) -> None:
    job_id = local_stack.submit_ok(CASES / "pdf_encrypted_owner_only.pdf")

    body = local_stack.wait_for(job_id)

    assert body["status"] == "finished"
    assert "CONTRACT PAGE ONE" in body["text"]


def test_page_timeout_fails_image(local_stack: Stack) -> None:
    started = time.monotonic()
    job_id = local_stack.submit_ok(CASES / "png_dense_text_timeout.png")

    body = local_stack.wait_for(job_id)

    assert body["status"] == "failed"
    assert body["error"]["code"] == "ocr_timeout"
    assert time.monotonic() - started < 30
    assert_clean(local_stack)


def test_timeout_page_makes_partial(local_stack: Stack, tmp_path: Path) -> None:
    pdf = unite(
        tmp_path,
        "mixed.pdf",
        CASES / "ok_vector_1page.pdf",
        CASES / "pdf_dense_text_slow.pdf",
    )
    # Both pages have a text layer, which mode auto would read without OCR.
    job_id = local_stack.submit_ok(pdf, options={"mode": "force"})

    body = local_stack.wait_for(job_id)

    assert body["status"] == "finished"
    assert body["partial"] is True
    first, second = body["pages"]
    assert "CONTRACT PAGE ONE" in first["text"]
    assert first["error"] is None
    assert second["text"] is None
    assert second["state"] == "failed"
    assert second["error"]["code"] == "ocr_timeout"
    assert body["pages_done"] == 2
    assert_clean(local_stack)


def test_no_large_redis_values(local_stack: Stack) -> None:
    # A valid PNG followed by 5 MB of padding, which decoders ignore.
    content = (CASES / "ok_rgb.png").read_bytes() + b"\0" * (5 * 1024 * 1024)
    response = local_stack.submit(CASES / "ok_rgb.png", content=content)
    body = local_stack.wait_for(response.json()["job_id"])
    assert body["status"] == "finished"
    assert body["size_bytes"] == len(content)

    redis = Redis.from_url(local_stack.env["REDIS_URL"])
    sizes = {key: redis.memory_usage(key) or 0 for key in redis.scan_iter()}
    assert sizes
    assert max(sizes.values()) < 64 * 1024, max(sizes.items(), key=lambda item: item[1])


def test_request_id_reaches_worker_logs(local_stack: Stack) -> None:
    response = local_stack.submit(
        CASES / "ok_rgb.png", headers={"X-Request-ID": "trace-e2e.1"}
    )
    job_id = response.json()["job_id"]
    local_stack.wait_for(job_id)

    lines = []
    for log in local_stack.log_dir.glob("worker-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and job_id in line:
                lines.append(json.loads(line))
    events = {line["message"] for line in lines if line.get("job_id") == job_id}
    assert {"job started", "page done", "job finished"} <= events
    assert all(
        line["request_id"] == "trace-e2e.1"
        for line in lines
        if line.get("job_id") == job_id
    )
    assert not any("INVOICE NUMBER" in json.dumps(line) for line in lines)


def test_killed_horse_page_runs_again(local_stack: Stack, tmp_path: Path) -> None:
    pdf = unite(tmp_path, "long.pdf", *[DATA / "scan_3p.pdf"] * 2)
    job_id = local_stack.submit_ok(pdf)

    horse = find_busy_horse(local_stack, timeout_s=60)
    os.kill(horse, signal.SIGKILL)

    body = local_stack.wait_for(job_id, timeout_s=120)
    assert body["status"] == "finished", body
    assert body["partial"] is False
    assert [page["state"] for page in body["pages"]] == ["done"] * 6
    retried = retried_stages(local_stack, job_id)
    assert len(retried) == 1, retried
    assert_clean_tools(local_stack)


def retried_stages(stack: Stack, job_id: str) -> list[str]:
    redis = Redis.from_url(stack.env["REDIS_URL"])
    return [key.decode() for key in redis.scan_iter(f"rq:job:{job_id}-*-a2")]


def assert_clean_tools(stack: Stack) -> None:
    deadline = time.monotonic() + 5
    while stack.tool_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.tool_processes() == []


def find_busy_horse(stack: Stack, timeout_s: float) -> int:
    """Return the pid of a work horse that is running an OCR tool.

    A worker's children are its work horse and its scheduler; only the horse starts
    tesseract or pdftoppm.
    """
    leaders = {
        process.pid for name, process in stack.processes.items() if name != "web"
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pids in stack.worker_pids().values():
            for pid in pids:
                if parent_of(pid) in leaders and children_of(pid):
                    return pid
        time.sleep(0.05)
    raise AssertionError("no work horse ran an OCR tool in time")


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def test_readiness_reports_workers(local_stack: Stack) -> None:
    body = httpx.get(f"{local_stack.base_url}/api/v1/health/ready").json()

    assert body["status"] == "ok"
    assert body["workers"] == 2
    assert set(body["queues"]) == {"default", "webhooks", "pages"}
