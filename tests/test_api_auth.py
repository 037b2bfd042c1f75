"""API keys, job ownership, and per-caller limits."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.auth import find_key_name
from api.keys import entry_for, new_key, parse_api_keys
from api.main import create_app
from tests.conftest import CASES, make_settings

PNG = (CASES / "ok_rgb.png").read_bytes()
ALICE = new_key()
BOB = new_key()


def keyed_app(redis_url: str, tmp_path: Path, **overrides) -> TestClient:
    keys = ",".join([entry_for("alice", ALICE), entry_for("bob", BOB)])
    settings = make_settings(
        redis_url, tmp_path / "storage", API_KEYS=keys, **overrides
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with keyed_app(redis_url, tmp_path) as client:
        yield client


def as_(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(client: TestClient, key: str | None):
    headers = as_(key) if key else {}
    return client.post(
        "/api/v1/ocr/submit", files={"file": ("a.png", PNG)}, headers=headers
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": "nope"},
        {"Authorization": "Basic eA=="},
    ],
)
def test_missing_or_wrong_key(api: TestClient, headers: dict) -> None:
    response = api.post(
        "/api/v1/ocr/submit", files={"file": ("a.png", PNG)}, headers=headers
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


def test_bearer_and_header_accepted(api: TestClient) -> None:
    assert submit(api, ALICE).status_code == 202
    response = api.post(
        "/api/v1/ocr/submit", files={"file": ("a.png", PNG)}, headers={"X-API-Key": BOB}
    )
    assert response.status_code == 202


def test_health_and_docs_open(api: TestClient) -> None:
    assert api.get("/api/v1/health").status_code == 200
    assert api.get("/api/v1/health/ready").status_code == 200
    assert api.get("/openapi.json").status_code == 200


def test_other_key_sees_nothing(api: TestClient) -> None:
    job_id = submit(api, ALICE).json()["job_id"]

    mine = api.get(f"/api/v1/ocr/result/{job_id}", headers=as_(ALICE))
    theirs = api.get(f"/api/v1/ocr/result/{job_id}", headers=as_(BOB))
    unknown = api.get("/api/v1/ocr/result/" + "0" * 32, headers=as_(BOB))

    assert mine.status_code == 200
    assert mine.json()["job_id"] == job_id
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "job_not_found"
    assert theirs.json()["error"]["message"] == unknown.json()["error"]["message"]
    for path in ("/pages/1", "/text"):
        other = api.get(f"/api/v1/ocr/result/{job_id}{path}", headers=as_(BOB))
        assert other.status_code == 404
    deleted = api.delete(f"/api/v1/ocr/jobs/{job_id}", headers=as_(BOB))
    assert deleted.status_code == 404
    assert (
        api.get(f"/api/v1/ocr/result/{job_id}", headers=as_(ALICE)).status_code == 200
    )


def test_rotated_key_keeps_jobs(redis_url: str, tmp_path: Path) -> None:
    with keyed_app(redis_url, tmp_path) as client:
        job_id = submit(client, ALICE).json()["job_id"]
    rotated = new_key()
    settings = make_settings(
        redis_url, tmp_path / "storage", API_KEYS=entry_for("alice", rotated)
    )
    with TestClient(create_app(settings)) as client:
        old = client.get(f"/api/v1/ocr/result/{job_id}", headers=as_(ALICE))
        new = client.get(f"/api/v1/ocr/result/{job_id}", headers=as_(rotated))

    assert old.status_code == 401
    assert new.status_code == 200


def test_rate_limit_per_key(redis_url: str, tmp_path: Path) -> None:
    with keyed_app(redis_url, tmp_path, RATE_LIMIT_PER_MINUTE=3) as client:
        statuses = [
            client.get("/api/v1/ocr/result/" + "0" * 32, headers=as_(ALICE)).status_code
            for _ in range(4)
        ]
        limited = client.get("/api/v1/ocr/result/" + "0" * 32, headers=as_(ALICE))
        other = client.get("/api/v1/ocr/result/" + "0" * 32, headers=as_(BOB))

    assert statuses == [404, 404, 404, 429]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert other.status_code == 404


def test_active_job_limit(redis_url: str, tmp_path: Path) -> None:
    with keyed_app(redis_url, tmp_path, MAX_ACTIVE_JOBS=2) as client:
        first = submit(client, ALICE).json()["job_id"]
        submit(client, ALICE)
        refused = submit(client, ALICE)
        other = submit(client, BOB)
        client.delete(f"/api/v1/ocr/jobs/{first}", headers=as_(ALICE))
        after_cancel = submit(client, ALICE)

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert "limit is 2" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) > 0
    assert other.status_code == 202
    assert after_cancel.status_code == 202


def test_limits_off_with_zero(redis_url: str, tmp_path: Path) -> None:
    with keyed_app(
        redis_url, tmp_path, RATE_LIMIT_PER_MINUTE=0, MAX_ACTIVE_JOBS=0
    ) as client:
        statuses = {submit(client, ALICE).status_code for _ in range(5)}

    assert statuses == {202}


def test_open_mode_limits_per_address(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, tmp_path / "storage", RATE_LIMIT_PER_MINUTE=2)
    with TestClient(create_app(settings)) as client:
        statuses = [
            client.get("/api/v1/ocr/result/" + "0" * 32).status_code for _ in range(3)
        ]

    assert statuses == [404, 404, 429]


def test_parse_api_keys() -> None:
    entry = entry_for("ci", "secret")

    assert parse_api_keys(f" {entry} , ") == {"ci": bytes.fromhex(entry.split(":")[1])}
    assert parse_api_keys("") == {}
    for bad in ("ci", "ci:1234", ":" + "0" * 64, "ci:" + "z" * 64):
        with pytest.raises(ValueError, match="API_KEYS entry"):
            parse_api_keys(bad)


def test_find_key_name() -> None:
    keys = parse_api_keys(",".join([entry_for("a", "one"), entry_for("b", "two")]))

    assert find_key_name(keys, "two") == "b"
    assert find_key_name(keys, "three") is None


def test_new_keys_are_random() -> None:
    keys = {new_key() for _ in range(100)}

    assert len(keys) == 100
    assert all(len(key) >= 40 for key in keys)
