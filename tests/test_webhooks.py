"""Webhooks: signed delivery by a worker, retries, the delivery log, and the checks
that keep callbacks away from loopback, private and metadata addresses.
"""

import hashlib
import hmac
import ipaddress
import json
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from api.main import create_app
from core.callback_urls import blocked_reason, parse_allowed_networks
from core.jobs import JobRecord, JobStatus
from core.jobstore import JobStore
from core.webhooks import WEBHOOKS_DUE_KEY, deliveries_key, delivery_rq_job_id
from tests.conftest import CASES, OPS_KEYS, OPS_WEBHOOK_SECRET, make_settings
from tests.support.servers import ReceivedRequest, WebhookReceiver
from tests.support.stack import Stack
from worker.recovery import recover_stage
from worker.webhooks import attempt_delivery

pytestmark = pytest.mark.integration

ALICE = {"Authorization": f"Bearer {OPS_KEYS['alice']}"}
PNG = CASES / "ok_rgb.png"


def verify_as_receiver(request: ReceivedRequest, secret: str) -> bool:
    """Check the signature as a receiver's own code would, without pindai's code."""
    parts = dict(
        item.split("=", 1) for item in request.headers["Pindai-Signature"].split(",")
    )
    if abs(time.time() - int(parts["t"])) > 300:
        return False
    signed = parts["t"].encode() + b"." + request.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def submit_with(stack: Stack, path: Path, **fields: str) -> httpx.Response:
    return stack.submit(path, options=fields, headers=ALICE)


def deliveries(stack: Stack, job_id: str) -> dict:
    response = httpx.get(
        f"{stack.base_url}/api/v1/ocr/jobs/{job_id}/deliveries", headers=ALICE
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_state(stack: Stack, job_id: str, state: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = deliveries(stack, job_id)
        if body["state"] == state:
            return body
        time.sleep(0.2)
    raise AssertionError(f"delivery state is {body['state']}, expected {state}")


def test_webhook_delivered_and_signed(ops_stack: Stack) -> None:
    with WebhookReceiver() as receiver:
        callback = f"{receiver.url}/hooks/ocr?source=test"
        response = submit_with(ops_stack, PNG, callback_url=callback, tag="batch-7")
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        [request] = receiver.wait_for(1)

    assert verify_as_receiver(request, OPS_WEBHOOK_SECRET)
    assert not verify_as_receiver(request, "another-secret")
    assert request.path == "/hooks/ocr?source=test"
    assert request.headers["Pindai-Event"] == "job.ended"
    assert request.headers["Pindai-Delivery"] == job_id
    assert request.headers["Host"] == receiver.url.removeprefix("http://")
    body = json.loads(request.body)
    assert body["job_id"] == job_id
    assert body["status"] == "finished"
    assert body["error"] is None
    assert body["tag"] == "batch-7"
    assert body["pages"] == {"count": 1, "done": 1, "failed": 0}
    assert body["result_url"] == f"{ops_stack.base_url}/api/v1/ocr/result/{job_id}"
    record = wait_for_state(ops_stack, job_id, "delivered")
    assert record["callback_url"] == callback
    [attempt] = record["attempts"]
    assert attempt["attempt"] == 1
    assert attempt["status_code"] == 200
    assert attempt["next_attempt_at"] is None


def test_webhook_retried_after_failure(ops_stack: Stack) -> None:
    with WebhookReceiver(statuses=[500]) as receiver:
        response = submit_with(ops_stack, PNG, callback_url=f"{receiver.url}/h")
        job_id = response.json()["job_id"]
        first, second = receiver.wait_for(2, timeout_s=60)

    assert first.body == second.body
    assert verify_as_receiver(second, OPS_WEBHOOK_SECRET)
    record = wait_for_state(ops_stack, job_id, "delivered")
    failed, delivered = record["attempts"]
    assert failed["outcome"] == "failed"
    assert failed["status_code"] == 500
    assert failed["next_attempt_at"] is not None
    assert delivered["outcome"] == "delivered"
    assert delivered["attempt"] == 2


def test_webhook_abandoned_after_max_attempts(ops_stack: Stack) -> None:
    # The stack allows 3 attempts, 1 s then 4 s apart (plus the monitor's pass).
    with WebhookReceiver(statuses=[503, 503, 503, 503]) as receiver:
        response = submit_with(ops_stack, PNG, callback_url=f"{receiver.url}/h")
        job_id = response.json()["job_id"]
        receiver.wait_for(3, timeout_s=60)
        record = wait_for_state(ops_stack, job_id, "failed")
        time.sleep(1)
        assert len(receiver.requests) == 3

    assert [a["outcome"] for a in record["attempts"]] == ["failed"] * 3
    assert record["attempts"][-1]["next_attempt_at"] is None


def test_webhook_reports_failed_job(ops_stack: Stack) -> None:
    with WebhookReceiver() as receiver:
        pdf = CASES / "pdf_truncated_half.pdf"
        response = submit_with(ops_stack, pdf, callback_url=receiver.url, tag="t")
        job_id = response.json()["job_id"]
        [request] = receiver.wait_for(1)

    body = json.loads(request.body)
    assert body["job_id"] == job_id
    assert body["status"] == "failed"
    assert body["error"]["code"] == "pdf_corrupt"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/hook",
        "http://[::ffff:a9fe:a9fe]/hook",
        "http://192.168.0.10:9000/",
        "http://0.0.0.0/",
    ],
)
def test_callback_to_private_address_refused(ops_stack: Stack, url: str) -> None:
    jobs_dir = Path(ops_stack.env["STORAGE_DIR"]) / "jobs"
    before = sorted(jobs_dir.iterdir()) if jobs_dir.exists() else []

    response = submit_with(ops_stack, PNG, callback_url=url)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "callback_url_refused"
    after = sorted(jobs_dir.iterdir()) if jobs_dir.exists() else []
    assert after == before


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/hook",
        "http://user:pass@example.org/hook",
        "http:///no-host",
        "http://example.org:99999/",
        "https://example.org/" + "a" * 2100,
    ],
)
def test_malformed_callback_rejected(ops_stack: Stack, url: str) -> None:
    response = submit_with(ops_stack, PNG, callback_url=url)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert "callback_url" in response.json()["error"]["message"]


def test_tag_must_be_printable(ops_stack: Stack) -> None:
    response = submit_with(ops_stack, PNG, tag="line\nbreak")

    assert response.status_code == 422
    assert "form.tag" in response.json()["error"]["message"]


def test_callback_needs_secret(client: TestClient) -> None:
    response = client.post(
        "/api/v1/ocr/submit",
        files={"file": ("a.png", PNG.read_bytes())},
        data={"callback_url": "https://example.org/hook"},
    )

    assert response.status_code == 422
    assert "WEBHOOK_SECRET" in response.json()["error"]["message"]


def test_loopback_refused_without_allow_list(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, tmp_path / "storage", WEBHOOK_SECRET="s")
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/api/v1/ocr/submit",
            files={"file": ("a.png", PNG.read_bytes())},
            data={"callback_url": "http://127.0.0.1:9/hook"},
        )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "callback_url_refused"
    assert list((tmp_path / "storage").rglob("source")) == []


def callback_job(job_id: str, status: JobStatus, callback_url: str) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        status=status,
        file_type="png",
        filename=None,
        sha256="",
        size_bytes=1,
        request_id="r",
        created_at="2026-01-01T00:00:00.000Z",
        callback_url=callback_url,
    )


def test_delivery_rechecks_address(redis_url: str, tmp_path: Path) -> None:
    # Accepted at submit under an allow-list that the workers no longer have: the
    # delivery must check the address again and send nothing.
    settings = make_settings(redis_url, tmp_path / "storage", WEBHOOK_SECRET="s")
    redis = Redis.from_url(redis_url)
    record = callback_job("0" * 32, JobStatus.FINISHED, "http://127.0.0.1:9/hook")
    with WebhookReceiver() as receiver:
        record.callback_url = f"{receiver.url}/hook"
        outcome = attempt_delivery(redis, settings, record)
        assert receiver.requests == []

    assert outcome == "rejected"


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("fd00:ec2::254", True),
        ("::ffff:127.0.0.1", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("2002:7f00:1::1", True),
        ("2002:a9fe:a9fe::1", True),
        ("fec0::1", True),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),
    ],
)
def test_address_classes(address: str, blocked: bool) -> None:
    reason = blocked_reason(ipaddress.ip_address(address), [])

    assert (reason is not None) == blocked


def test_allowed_network_admits_address() -> None:
    allowed = parse_allowed_networks("10.0.0.0/8, fd00::/8")

    assert blocked_reason(ipaddress.ip_address("10.9.8.7"), allowed) is None
    assert blocked_reason(ipaddress.ip_address("fd00:ec2::254"), allowed) is None
    assert blocked_reason(ipaddress.ip_address("192.168.0.1"), allowed) is not None


def test_slow_receiver_times_out(ops_stack: Stack) -> None:
    with WebhookReceiver(drip_seconds=0.5) as receiver:
        response = submit_with(ops_stack, PNG, callback_url=f"{receiver.url}/slow")
        job_id = response.json()["job_id"]
        record = wait_for_state(ops_stack, job_id, "retrying")

    [attempt] = record["attempts"]
    assert attempt["outcome"] == "failed"
    assert "2 s" in attempt["error"]
    assert attempt["duration_ms"] < 5000


def test_huge_answer_not_read(ops_stack: Stack) -> None:
    with WebhookReceiver(body_bytes=200 * 1024 * 1024) as receiver:
        response = submit_with(ops_stack, PNG, callback_url=f"{receiver.url}/big")
        job_id = response.json()["job_id"]
        record = wait_for_state(ops_stack, job_id, "delivered")

    assert record["attempts"][0]["duration_ms"] < 2000


def test_callback_with_control_character(ops_stack: Stack) -> None:
    for url in ("http://127.0.0.1:9/ctl\x01x", "http://exämple.org/"):
        response = submit_with(ops_stack, PNG, callback_url=url)

        assert response.status_code == 422, url
        assert "printable ASCII" in response.json()["error"]["message"]


def test_lost_delivery_counted(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        redis_url, tmp_path / "storage", WEBHOOK_SECRET="s", WEBHOOK_MAX_ATTEMPTS=3
    )
    redis = Redis.from_url(redis_url)
    record = callback_job("1" * 32, JobStatus.QUEUED, "https://hooks.example.org/h")
    store = JobStore(redis, settings)
    with redis.pipeline() as pipeline:
        store.create(record, pipeline)
        pipeline.execute()
    store.fail(record.job_id, "cancelled", "The job was cancelled.")

    # The work horse delivering it dies; the worker recovers the RQ job.
    recover_stage(redis, settings, delivery_rq_job_id(record.job_id))

    [attempt] = [
        json.loads(item) for item in redis.lrange(deliveries_key(record.job_id), 0, -1)
    ]
    assert attempt["outcome"] == "failed"
    assert "died" in attempt["error"]
    assert attempt["next_attempt_at"] is not None
    assert redis.zscore(WEBHOOKS_DUE_KEY, record.job_id) is not None
