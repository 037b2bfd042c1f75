"""The API on the S3 backend, against moto's S3 server over HTTP on loopback:
streamed multipart uploads, presigned direct uploads, lifecycle rules.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from api.main import create_app
from core.settings import Settings
from tests.conftest import CASES, s3_client, s3_settings_for

PNG = (CASES / "ok_rgb.png").read_bytes()


def s3_app_settings(
    redis_url: str, tmp_path: Path, endpoint: str, bucket: str, **overrides
) -> Settings:
    return s3_settings_for(
        endpoint,
        bucket,
        REDIS_URL=redis_url,
        STORAGE_DIR=tmp_path / "unused",
        LOG_JSON=True,
        **overrides,
    )


def bucket_state(settings: Settings) -> tuple[list[str], list[str]]:
    client = s3_client(settings.S3_ENDPOINT_URL)
    keys = [
        item["Key"]
        for item in client.list_objects_v2(Bucket=settings.S3_BUCKET).get(
            "Contents", []
        )
    ]
    pending = [
        upload["Key"]
        for upload in client.list_multipart_uploads(Bucket=settings.S3_BUCKET).get(
            "Uploads", []
        )
    ]
    return keys, pending


def test_submit_streams_large_file(s3_api: TestClient, s3_settings: Settings) -> None:
    # Several multipart parts: sent as an S3 multipart upload.
    content = PNG + b"\0" * (17 * 1024 * 1024)
    response = s3_api.post("/api/v1/ocr/submit", files={"file": ("big.png", content)})

    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    keys, pending = bucket_state(s3_settings)
    assert keys == [f"jobs/{job_id}/source"]
    assert pending == []
    body = (
        s3_client(s3_settings.S3_ENDPOINT_URL)
        .get_object(Bucket=s3_settings.S3_BUCKET, Key=keys[0])["Body"]
        .read()
    )
    assert body == content


def test_refused_upload_aborts_multipart(
    redis_url: str, tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    settings = s3_app_settings(
        redis_url, tmp_path, s3_endpoint, s3_bucket, MAX_UPLOAD_BYTES=9 * 1024 * 1024
    )
    boundary = "b"

    def body() -> Iterator[bytes]:
        yield (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        ).encode() + PNG
        for _ in range(12):
            yield b"\0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post(
            "/api/v1/ocr/submit",
            content=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    assert response.status_code == 413
    assert bucket_state(settings) == ([], [])


def ticket(client: TestClient, **details) -> dict:
    response = client.post("/api/v1/ocr/uploads", json=details or None)
    assert response.status_code == 201, response.text
    return response.json()


def test_presigned_upload_becomes_job(
    s3_api: TestClient, s3_settings: Settings
) -> None:
    upload = ticket(s3_api, filename="../scan.png")

    assert upload["method"] == "PUT"
    assert upload["expires_at"].endswith("Z")
    put = httpx.put(upload["url"], content=PNG, headers=upload["headers"])
    assert put.status_code == 200
    response = s3_api.post("/api/v1/ocr/jobs", json={"upload_id": upload["upload_id"]})

    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert job_id == upload["upload_id"]
    assert response.headers["location"] == f"/api/v1/ocr/result/{job_id}"
    result = s3_api.get(f"/api/v1/ocr/result/{job_id}").json()
    assert result["status"] == "queued"
    assert result["file_type"] == "png"
    assert result["filename"] == "scan.png"
    assert result["size_bytes"] == len(PNG)
    assert result["sha256"] is None
    queue = Redis.from_url(s3_settings.REDIS_URL).lrange("rq:queue:default", 0, -1)
    assert queue == [f"{job_id}-image".encode()]

    again = s3_api.post("/api/v1/ocr/jobs", json={"upload_id": upload["upload_id"]})
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "upload_not_found"
    assert bucket_state(s3_settings) == ([f"jobs/{job_id}/source"], [])


def test_upload_replaced_after_check(s3_api: TestClient, s3_settings: Settings) -> None:
    upload = ticket(s3_api)
    httpx.put(upload["url"], content=PNG)
    job_id = s3_api.post(
        "/api/v1/ocr/jobs", json={"upload_id": upload["upload_id"]}
    ).json()["job_id"]

    # The presigned URL is still valid: a second PUT must not reach the job's source.
    swapped = httpx.put(upload["url"], content=b"%PDF-" + b"x" * 50_000)

    assert swapped.status_code == 200
    client = s3_client(s3_settings.S3_ENDPOINT_URL)
    source = client.get_object(
        Bucket=s3_settings.S3_BUCKET, Key=f"jobs/{job_id}/source"
    )
    assert source["Body"].read() == PNG


def test_job_before_upload_keeps_id(s3_api: TestClient) -> None:
    upload = ticket(s3_api)

    early = s3_api.post("/api/v1/ocr/jobs", json={"upload_id": upload["upload_id"]})
    assert early.status_code == 404
    assert "PUT the file" in early.json()["error"]["message"]

    httpx.put(upload["url"], content=PNG)
    late = s3_api.post("/api/v1/ocr/jobs", json={"upload_id": upload["upload_id"]})
    assert late.status_code == 202


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"plain text pretending to be a scan", 415, "unsupported_media_type"),
        (b"", 400, "empty_file"),
    ],
)
def test_bad_upload_deleted(
    s3_api: TestClient, s3_settings: Settings, content: bytes, status: int, code: str
) -> None:
    upload = ticket(s3_api)
    httpx.put(upload["url"], content=content)

    response = s3_api.post("/api/v1/ocr/jobs", json={"upload_id": upload["upload_id"]})

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert bucket_state(s3_settings) == ([], [])
    reuse = s3_api.post("/api/v1/ocr/jobs", json={"upload_id": upload["upload_id"]})
    assert reuse.status_code == 404


def test_oversize_upload_deleted(
    redis_url: str, tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    settings = s3_app_settings(
        redis_url, tmp_path, s3_endpoint, s3_bucket, MAX_UPLOAD_BYTES=10_000
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        upload = ticket(client)
        httpx.put(upload["url"], content=PNG + b"\0" * 20_000)

        response = client.post(
            "/api/v1/ocr/jobs", json={"upload_id": upload["upload_id"]}
        )
        declared = client.post("/api/v1/ocr/uploads", json={"size_bytes": 20_000})

    assert response.status_code == 413
    assert bucket_state(settings) == ([], [])
    assert declared.status_code == 413


@pytest.mark.parametrize("upload_id", ["0" * 32, "../etc", "x" * 64])
def test_unknown_upload_id(s3_api: TestClient, upload_id: str) -> None:
    response = s3_api.post("/api/v1/ocr/jobs", json={"upload_id": upload_id})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "upload_not_found"


def test_public_endpoint_signs_urls(
    redis_url: str, tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    settings = s3_app_settings(
        redis_url,
        tmp_path,
        s3_endpoint,
        s3_bucket,
        S3_PUBLIC_ENDPOINT_URL="https://files.example.test",
    )
    with TestClient(create_app(settings)) as client:
        upload = ticket(client)

    assert upload["url"].startswith(f"https://files.example.test/{s3_bucket}/uploads/")
    assert "X-Amz-Signature=" in upload["url"]


def test_local_backend_not_supported(client: TestClient) -> None:
    response = client.post("/api/v1/ocr/uploads")

    assert response.status_code == 501
    assert response.json()["error"]["code"] == "not_supported"
    assert "STORAGE_BACKEND=s3" in response.json()["error"]["message"]


def test_lifecycle_rule_merged(s3_settings: Settings) -> None:
    client = s3_client(s3_settings.S3_ENDPOINT_URL)
    foreign = {
        "ID": "keep-me",
        "Filter": {"Prefix": "other/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=s3_settings.S3_BUCKET, LifecycleConfiguration={"Rules": [foreign]}
    )

    with TestClient(create_app(s3_settings)):
        pass

    rules = client.get_bucket_lifecycle_configuration(Bucket=s3_settings.S3_BUCKET)
    by_id = {rule["ID"]: rule for rule in rules["Rules"]}
    assert set(by_id) == {"keep-me", "pindai-expire-jobs", "pindai-expire-uploads"}
    assert by_id["pindai-expire-uploads"]["Filter"]["Prefix"] == "uploads/"
    assert by_id["pindai-expire-jobs"]["Expiration"]["Days"] == 2
    assert by_id["pindai-expire-jobs"]["Filter"]["Prefix"] == "jobs/"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/api/v1/ocr/uploads", {"bogus": 1}),
        ("/api/v1/ocr/jobs", {"upload_id": "0" * 32, "x": 1}),
    ],
)
def test_unknown_json_fields_rejected(
    s3_api: TestClient, route: str, body: dict
) -> None:
    response = s3_api.post(route, json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
