"""Operating the service: metrics, readiness, job listing, usage and joined-up logs.

Most tests run against a stack with API keys, where each job is done by a worker
process, so the metrics and logs checked here cross process boundaries.
"""

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from api.main import create_app
from core.heartbeats import HEARTBEATS_KEY, LIVE_WITHIN_SECONDS, record_heartbeat
from tests.conftest import (
    CASES,
    OPS_KEYS,
    OPS_METRICS_TOKEN,
    make_settings,
    s3_settings_for,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

ALICE = {"Authorization": f"Bearer {OPS_KEYS['alice']}"}
BOB = {"X-API-Key": OPS_KEYS["bob"]}


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of /metrics keyed by name and sorted labels."""
    response = httpx.get(
        f"{stack.base_url}/metrics",
        headers={"Authorization": f"Bearer {OPS_METRICS_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def submit(stack: Stack, case: str, headers: dict[str, str]) -> str:
    return stack.submit_ok(CASES / case, headers=headers)


def wait_for(stack: Stack, job_id: str, headers: dict[str, str]) -> dict:
    return stack.wait_for(job_id, headers=headers)


def test_metrics_count_worker_job(ops_stack: Stack) -> None:
    before = scrape(ops_stack)
    size = (CASES / "ok_rgb.png").stat().st_size

    job_id = submit(ops_stack, "ok_rgb.png", ALICE)
    assert wait_for(ops_stack, job_id, ALICE)["status"] == "finished"
    after = scrape(ops_stack)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("pindai_jobs_submitted_total", file_type="png") == 1
    assert delta("pindai_jobs_finished_total", partial="false") == 1
    assert delta("pindai_pages_total", api_key="alice", outcome="done") == 1
    assert delta("pindai_upload_bytes_total", path="multipart") == size
    # Recorded by the worker's work horse, a process of its own.
    assert delta("pindai_page_ocr_seconds_count") == 1
    assert delta("pindai_page_ocr_seconds_sum") > 0
    assert delta("pindai_page_ocr_seconds_bucket", le="+Inf") == 1
    assert (
        delta(
            "pindai_http_requests_total",
            method="POST",
            route="/api/v1/ocr/submit",
            status="202",
        )
        == 1
    )
    assert value(after, "pindai_workers") == 2
    assert value(after, "pindai_queue_depth", queue="default") == 0


def test_metrics_count_failed_job(ops_stack: Stack) -> None:
    before = scrape(ops_stack)

    job_id = submit(ops_stack, "pdf_truncated_half.pdf", ALICE)
    body = wait_for(ops_stack, job_id, ALICE)
    after = scrape(ops_stack)

    code = body["error"]["code"]
    failed_before = value(before, "pindai_jobs_failed_total", code=code)
    assert value(after, "pindai_jobs_failed_total", code=code) == failed_before + 1


def test_metrics_count_rasterize(ops_stack: Stack) -> None:
    before = scrape(ops_stack)

    job_id = submit(ops_stack, "ok_scanned_3pages.pdf", ALICE)
    assert wait_for(ops_stack, job_id, ALICE)["status"] == "finished"
    after = scrape(ops_stack)

    rendered = value(after, "pindai_rasterize_seconds_count") - value(
        before, "pindai_rasterize_seconds_count"
    )
    assert rendered == 3


def test_metrics_need_token(ops_stack: Stack) -> None:
    without = httpx.get(f"{ops_stack.base_url}/metrics")
    wrong = httpx.get(
        f"{ops_stack.base_url}/metrics", headers={"Authorization": "Bearer nope"}
    )

    assert without.status_code == 401
    assert without.json()["error"]["code"] == "unauthorized"
    assert wrong.status_code == 401


def test_metrics_route_label_bounded(ops_stack: Stack) -> None:
    httpx.get(f"{ops_stack.base_url}/no/such/path/7f3a")

    samples = scrape(ops_stack)

    routes = {dict(labels).get("route") for (name, labels) in samples}
    assert "unmatched" in routes
    assert not any(route and "7f3a" in route for route in routes)


def test_readiness_reports_live_workers(redis_url: str, tmp_path: Path) -> None:
    redis = Redis.from_url(redis_url)
    record_heartbeat(redis, "worker-live")
    redis.zadd(HEARTBEATS_KEY, {"worker-gone": time.time() - LIVE_WITHIN_SECONDS - 5})
    settings = make_settings(redis_url, tmp_path / "storage")

    with TestClient(create_app(settings)) as client:
        body = client.get("/api/v1/health/ready").json()

    assert body["workers"] == 1


def test_readiness_without_bucket(s3_endpoint: str, redis_url: str) -> None:
    settings = s3_settings_for(
        s3_endpoint, "pindai-no-such-bucket", REDIS_URL=redis_url
    )

    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/health/ready")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert "pindai-no-such-bucket" not in response.text


def test_jobs_listed_newest_first(ops_stack: Stack) -> None:
    first = submit(ops_stack, "ok_rgb.png", ALICE)
    failed = submit(ops_stack, "pdf_truncated_half.pdf", ALICE)
    last = submit(ops_stack, "ok_rgb.jpg", ALICE)
    for job_id in (first, failed, last):
        wait_for(ops_stack, job_id, ALICE)
    url = f"{ops_stack.base_url}/api/v1/ocr/jobs"

    page_one = httpx.get(url, params={"limit": 2}, headers=ALICE).json()
    page_two = httpx.get(
        url, params={"limit": 2, "cursor": page_one["next_cursor"]}, headers=ALICE
    ).json()
    only_failed = httpx.get(url, params={"status": "failed"}, headers=ALICE).json()
    bobs = httpx.get(url, headers=BOB).json()

    assert [job["job_id"] for job in page_one["jobs"]] == [last, failed]
    assert page_two["jobs"][0]["job_id"] == first
    assert page_one["jobs"][1]["error"]["code"] == "pdf_corrupt"
    assert page_one["jobs"][0]["result_url"] == f"/api/v1/ocr/result/{last}"
    assert failed in [job["job_id"] for job in only_failed["jobs"]]
    assert {job["status"] for job in only_failed["jobs"]} == {"failed"}
    assert all(job["job_id"] not in (first, failed, last) for job in bobs["jobs"])


@pytest.mark.parametrize(
    "params", [{"status": "done"}, {"limit": 0}, {"limit": 101}, {"cursor": "abc"}]
)
def test_jobs_list_rejects_bad_query(ops_stack: Stack, params: dict) -> None:
    response = httpx.get(
        f"{ops_stack.base_url}/api/v1/ocr/jobs", params=params, headers=ALICE
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_jobs_list_needs_key(ops_stack: Stack) -> None:
    response = httpx.get(f"{ops_stack.base_url}/api/v1/ocr/jobs")

    assert response.status_code == 401


def test_usage_counts_jobs_pages_bytes(ops_stack: Stack) -> None:
    url = f"{ops_stack.base_url}/api/v1/usage"
    before = httpx.get(url, params={"days": 1}, headers=BOB).json()

    job_id = submit(ops_stack, "ok_scanned_3pages.pdf", BOB)
    assert wait_for(ops_stack, job_id, BOB)["status"] == "finished"
    after = httpx.get(url, params={"days": 1}, headers=BOB).json()

    assert after["caller"] == "bob"
    [today] = after["days"]
    assert today["date"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert today["jobs"] - before["days"][0]["jobs"] == 1
    assert today["pages"] - before["days"][0]["pages"] == 3
    size = (CASES / "ok_scanned_3pages.pdf").stat().st_size
    assert today["bytes"] - before["days"][0]["bytes"] == size
    assert after["total"]["pages"] == today["pages"]


def test_usage_covers_requested_days(ops_stack: Stack) -> None:
    body = httpx.get(
        f"{ops_stack.base_url}/api/v1/usage", params={"days": 7}, headers=BOB
    ).json()

    assert len(body["days"]) == 7
    assert body["days"][0]["date"] > body["days"][-1]["date"]
    invalid = httpx.get(
        f"{ops_stack.base_url}/api/v1/usage", params={"days": 0}, headers=BOB
    )
    assert invalid.status_code == 422


def read_log_lines(stack: Stack) -> dict[str, list[dict]]:
    lines: dict[str, list[dict]] = {}
    for path in stack.log_dir.glob("*.log"):
        lines[path.stem] = []
        for raw in path.read_text().splitlines():
            try:
                lines[path.stem].append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return lines


def test_logs_join_request_and_job(ops_stack: Stack) -> None:
    request_id = f"trace-{time.time_ns()}"
    job_id = submit(
        ops_stack, "ok_scanned_3pages.pdf", {**ALICE, "X-Request-ID": request_id}
    )
    assert wait_for(ops_stack, job_id, ALICE)["status"] == "finished"
    time.sleep(0.5)

    lines = read_log_lines(ops_stack)
    job_lines = [
        (process, line)
        for process, entries in lines.items()
        for line in entries
        if line.get("job_id") == job_id
    ]
    api_messages = {line["message"] for process, line in job_lines if process == "web"}
    worker_messages = {
        line["message"] for process, line in job_lines if process != "web"
    }

    assert {"job submitted", "request finished"} <= api_messages
    assert {"page done", "job finished"} <= worker_messages
    # The result polls carry their own request ids; every other line of the job
    # carries the submit request's id.
    submit_lines = [
        line
        for _, line in job_lines
        if not line.get("path", "").startswith("/api/v1/ocr/result")
    ]
    assert {line.get("request_id") for line in submit_lines} == {request_id}


def test_forwarded_address_must_be_ip(local_stack: Stack) -> None:
    url = f"{local_stack.base_url}/api/v1/usage"

    plain = httpx.get(url).json()
    spoofed = httpx.get(url, headers={"X-Forwarded-For": "not-an-ip:evil"}).json()

    assert plain["caller"] == "ip:127.0.0.1"
    assert spoofed["caller"] == "ip:unknown"


def test_request_urls_not_logged_by_httpx() -> None:
    # In a process of its own: configuring logging here would change this one's.
    probe = (
        "import logging; from core.logs import configure_logging; "
        "configure_logging('DEBUG'); "
        "print(logging.getLogger('httpx').getEffectiveLevel(), "
        "logging.getLogger('httpcore').getEffectiveLevel())"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()

    assert output == [str(logging.WARNING), str(logging.WARNING)]
