"""Idempotency keys on submit and on POST /jobs: one job per key and request."""

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from core.settings import Settings
from tests.conftest import CASES
from tests.test_api_s3 import bucket_state, ticket

PNG = (CASES / "ok_rgb.png").read_bytes()
JPEG = (CASES / "ok_rgb.jpg").read_bytes()


def submit(client: TestClient, data: bytes, key: str | None, **fields: str):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(
        "/api/v1/ocr/submit",
        files={"file": ("scan", data)},
        data=fields,
        headers=headers,
    )


def stored_sources(settings: Settings) -> list[Path]:
    return sorted(Path(settings.STORAGE_DIR).rglob("source"))


def test_same_key_returns_same_job(client: TestClient, settings: Settings) -> None:
    first = submit(client, PNG, "retry-1")
    second = submit(client, PNG, "retry-1")

    assert first.status_code == 202
    assert second.status_code == 202
    assert second.json()["job_id"] == first.json()["job_id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    queue = Redis.from_url(settings.REDIS_URL).lrange("rq:queue:default", 0, -1)
    assert len(queue) == 1
    assert len(stored_sources(settings)) == 1


def test_key_with_other_file_conflicts(client: TestClient, settings: Settings) -> None:
    submit(client, PNG, "retry-2")

    response = submit(client, JPEG, "retry-2")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    assert len(stored_sources(settings)) == 1


def test_key_with_other_options_conflicts(client: TestClient) -> None:
    submit(client, PNG, "retry-3", tag="a")

    response = submit(client, PNG, "retry-3", tag="b")

    assert response.status_code == 409


def test_no_key_makes_new_jobs(client: TestClient) -> None:
    first = submit(client, PNG, None)
    second = submit(client, PNG, None)

    assert first.json()["job_id"] != second.json()["job_id"]


def test_keys_differ_per_key(client: TestClient) -> None:
    first = submit(client, PNG, "retry-4")
    second = submit(client, PNG, "retry-5")

    assert first.json()["job_id"] != second.json()["job_id"]


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there"])
def test_invalid_key_rejected(client: TestClient, key: str) -> None:
    response = submit(client, PNG, key)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert "Idempotency-Key" in response.json()["error"]["message"]


def test_refused_request_frees_key(client: TestClient) -> None:
    rejected = submit(client, b"not an image", "retry-6")
    accepted = submit(client, PNG, "retry-6")

    assert rejected.status_code == 415
    assert accepted.status_code == 202
    assert "idempotent-replayed" not in accepted.headers


def upload(s3_api: TestClient, data: bytes) -> str:
    upload = ticket(s3_api)
    put = httpx.put(upload["url"], content=data, headers=upload["headers"])
    assert put.status_code == 200
    return upload["upload_id"]


def test_direct_upload_retry_returns_job(
    s3_api: TestClient, s3_settings: Settings
) -> None:
    upload_id = upload(s3_api, PNG)
    headers = {"Idempotency-Key": "direct-1"}
    body = {"upload_id": upload_id, "tag": "x"}

    first = s3_api.post("/api/v1/ocr/jobs", json=body, headers=headers)
    second = s3_api.post("/api/v1/ocr/jobs", json=body, headers=headers)

    assert first.status_code == 202, first.text
    assert second.status_code == 202, second.text
    assert second.json()["job_id"] == first.json()["job_id"] == upload_id
    assert second.headers["idempotent-replayed"] == "true"
    keys, pending = bucket_state(s3_settings)
    assert f"jobs/{upload_id}/source" in keys
    assert pending == []


def test_direct_upload_of_same_file_replays(s3_api: TestClient) -> None:
    # A client that retries from the start uploads the file again under a new id.
    headers = {"Idempotency-Key": "direct-2"}
    first = s3_api.post(
        "/api/v1/ocr/jobs", json={"upload_id": upload(s3_api, PNG)}, headers=headers
    )
    again = s3_api.post(
        "/api/v1/ocr/jobs", json={"upload_id": upload(s3_api, PNG)}, headers=headers
    )
    other = s3_api.post(
        "/api/v1/ocr/jobs", json={"upload_id": upload(s3_api, JPEG)}, headers=headers
    )

    assert again.status_code == 202
    assert again.json()["job_id"] == first.json()["job_id"]
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"


def test_key_free_after_delete(client: TestClient) -> None:
    first = submit(client, PNG, "retry-7").json()["job_id"]
    client.delete(f"/api/v1/ocr/jobs/{first}")  # cancels the queued job
    assert client.delete(f"/api/v1/ocr/jobs/{first}").status_code == 204

    again = submit(client, PNG, "retry-7")

    assert again.status_code == 202
    assert again.json()["job_id"] != first
    assert "idempotent-replayed" not in again.headers


def test_key_sent_twice_rejected(client: TestClient) -> None:
    response = client.post(
        "/api/v1/ocr/submit",
        files={"file": ("scan", PNG)},
        headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
    )

    assert response.status_code == 422
    assert "once" in response.json()["error"]["message"]
