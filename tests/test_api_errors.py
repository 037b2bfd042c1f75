"""Error bodies, request ids, results of unknown jobs, health and the OpenAPI schema."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes import ocr
from tests.conftest import CASES, make_settings


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


def test_liveness(client: TestClient) -> None:
    response = client.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_ok(client: TestClient) -> None:
    response = client.get("/api/v1/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "workers": 0,
        "queues": {"default": 0, "webhooks": 0, "pages": 0},
    }


def test_readiness_counts_queue(client: TestClient) -> None:
    png = (CASES / "ok_rgb.png").read_bytes()
    client.post("/api/v1/ocr/submit", files={"file": ("a.png", png)})

    body = client.get("/api/v1/health/ready").json()

    assert body["queues"]["default"] == 1


def test_readiness_names_redis(tmp_path: Path) -> None:
    settings = make_settings(
        "redis://127.0.0.1:9/0", tmp_path / "storage", REDIS_TIMEOUT_SECONDS=0.5
    )
    with TestClient(create_app(settings)) as client:
        error = assert_error(
            client.get("/api/v1/health/ready"), 503, "queue_unavailable"
        )

    assert "Redis" in error["message"]


def test_readiness_names_storage(redis_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = make_settings(redis_url, blocker / "storage")
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/health/ready")

    error = assert_error(response, 503, "storage_unavailable")
    assert "storage" in error["message"]
    assert int(response.headers["retry-after"]) > 0


def test_unknown_route(client: TestClient) -> None:
    error = assert_error(client.get("/api/v1/nothing"), 404, "not_found")

    assert "/api/v1/nothing" in error["message"]


def test_wrong_method(client: TestClient) -> None:
    response = client.delete("/api/v1/health")

    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize(
    "job_id",
    ["0" * 32, "not-a-job", "A" * 32, "0" * 31, "0" * 32 + ";x"],
)
def test_unknown_job(client: TestClient, job_id: str) -> None:
    response = client.get(f"/api/v1/ocr/result/{job_id}")

    assert_error(response, 404, "job_not_found")


def test_crash_gives_500_shape(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(job_id: str) -> bool:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(ocr, "is_job_id", explode)
    response = client.get("/api/v1/ocr/result/" + "0" * 32)

    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert error["message"] == "An unexpected error occurred."


def test_request_id_echoed(client: TestClient) -> None:
    response = client.get("/api/v1/health", headers={"X-Request-ID": "trace.42-a_b"})

    assert response.headers["x-request-id"] == "trace.42-a_b"


@pytest.mark.parametrize(
    "value",
    [b"has space", b"a" * 129, b"semi;colon", b'quote"d', "ünicode".encode()],
)
def test_request_id_replaced(client: TestClient, value: bytes) -> None:
    response = client.get("/api/v1/health", headers={"X-Request-ID": value})

    generated = response.headers["x-request-id"]
    assert generated.encode() != value
    assert len(generated) == 32
    assert all(char in "0123456789abcdef" for char in generated)


def test_request_id_on_errors(client: TestClient) -> None:
    response = client.get("/api/v1/nothing", headers={"X-Request-ID": "err-1"})

    assert response.headers["x-request-id"] == "err-1"
    assert response.json()["error"]["request_id"] == "err-1"


def test_request_id_generated(client: TestClient) -> None:
    first = client.get("/api/v1/health").headers["x-request-id"]
    second = client.get("/api/v1/health").headers["x-request-id"]

    assert first != second


def test_openapi_describes_upload(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    submit = schema["paths"]["/api/v1/ocr/submit"]["post"]

    body = submit["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    assert body["properties"]["file"]["format"] == "binary"
    assert set(submit["responses"]) >= {"202", "400", "413", "415", "422", "503"}
    error_ref = submit["responses"]["413"]["content"]["application/json"]["schema"]
    assert error_ref["$ref"].endswith("/ErrorBody")


def test_openapi_error_codes_closed(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    codes = schema["components"]["schemas"]["ErrorCode"]["enum"]

    assert "job_not_found" in codes
    assert "internal_error" in codes
