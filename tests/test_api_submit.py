"""Submit route: streaming validation, what reaches Redis and storage, error bodies."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from api.main import create_app
from api.upload import UploadLimits, body_chunks
from core.errors import UploadTimeout
from core.jobs import job_key
from core.settings import Settings
from tests.conftest import CASES, make_settings

PNG = (CASES / "ok_rgb.png").read_bytes()
PDF = (CASES / "ok_vector_1page.pdf").read_bytes()


def stored_files(settings: Settings) -> list[Path]:
    root = Path(settings.STORAGE_DIR)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def queued_job_ids(settings: Settings) -> list[str]:
    redis = Redis.from_url(settings.REDIS_URL)
    return [raw.decode() for raw in redis.lrange("rq:queue:default", 0, -1)]


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


def assert_nothing_kept(settings: Settings) -> None:
    assert stored_files(settings) == []
    assert queued_job_ids(settings) == []
    redis = Redis.from_url(settings.REDIS_URL)
    assert list(redis.scan_iter("pindai:job:*")) == []
    assert list(redis.scan_iter("pindai:active:*")) == []


def test_submit_png_accepted(client: TestClient, settings: Settings) -> None:
    response = client.post("/api/v1/ocr/submit", files={"file": ("scan.png", PNG)})

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["result_url"] == f"/api/v1/ocr/result/{body['job_id']}"
    assert response.headers["location"] == body["result_url"]
    assert len(body["job_id"]) == 32


def test_submit_enqueues_key_not_bytes(client: TestClient, settings: Settings) -> None:
    response = client.post("/api/v1/ocr/submit", files={"file": ("scan.png", PNG)})
    job_id = response.json()["job_id"]

    assert queued_job_ids(settings) == [f"{job_id}-image"]
    redis = Redis.from_url(settings.REDIS_URL)
    rq_job = Job.fetch(f"{job_id}-image", connection=redis, serializer=JSONSerializer)
    assert rq_job.func_name == "worker.jobs.ocr_image"
    assert list(rq_job.args) == [
        job_id,
        f"jobs/{job_id}/source",
        {"mode": "auto", "outputs": ["text"]},
    ]
    raw = redis.hgetall(f"rq:job:{job_id}-image")
    assert all(b"\x89PNG" not in value for value in raw.values())
    assert sum(len(value) for value in raw.values()) < 4096
    assert stored_files(settings)[0].read_bytes() == PNG


def test_submit_pdf_enqueues_probe(client: TestClient, settings: Settings) -> None:
    response = client.post("/api/v1/ocr/submit", files={"file": ("doc.pdf", PDF)})
    job_id = response.json()["job_id"]

    assert queued_job_ids(settings) == [f"{job_id}-probe"]


def test_submit_records_job_summary(client: TestClient, settings: Settings) -> None:
    response = client.post(
        "/api/v1/ocr/submit", files={"file": ("../../etc/passwd.png", PNG)}
    )
    job_id = response.json()["job_id"]

    result = client.get(f"/api/v1/ocr/result/{job_id}")
    assert result.status_code == 200
    body = result.json()
    assert body["status"] == "queued"
    assert body["file_type"] == "png"
    assert body["filename"] == "passwd.png"
    assert body["size_bytes"] == len(PNG)
    assert (
        body["sha256"]
        == "84c6842126d787eb6fcc63127f973b4149efe4e7d389405fa2b93af98945da58"
    )
    assert body["duration_ms"] is None
    assert body["created_at"].endswith("Z")
    assert int(result.headers["retry-after"]) >= 1


def test_type_comes_from_bytes(client: TestClient) -> None:
    response = client.post(
        "/api/v1/ocr/submit",
        files={"file": ("scan.pdf", PNG, "application/pdf")},
    )
    job_id = response.json()["job_id"]

    assert client.get(f"/api/v1/ocr/result/{job_id}").json()["file_type"] == "png"


@pytest.mark.parametrize(
    "case",
    ["text_renamed.png", "svg_text.svg", "gif_text.gif", "pdf_leading_junk.pdf"],
)
def test_unsupported_type_rejected(
    client: TestClient, settings: Settings, case: str
) -> None:
    data = (CASES / case).read_bytes()
    response = client.post(
        "/api/v1/ocr/submit", files={"file": ("notes.png", data, "image/png")}
    )

    assert_error(response, 415, "unsupported_media_type")
    assert_nothing_kept(settings)


def test_empty_file_rejected(client: TestClient, settings: Settings) -> None:
    response = client.post("/api/v1/ocr/submit", files={"file": ("empty.png", b"")})

    assert_error(response, 400, "empty_file")
    assert_nothing_kept(settings)


def test_short_file_rejected(client: TestClient, settings: Settings) -> None:
    response = client.post("/api/v1/ocr/submit", files={"file": ("x.png", b"%PD")})

    assert_error(response, 415, "unsupported_media_type")
    assert_nothing_kept(settings)


@pytest.fixture
def small_limit_client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(redis_url, tmp_path / "storage", MAX_UPLOAD_BYTES=20_000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.app_settings = settings
        yield client


def test_too_large_by_header(small_limit_client: TestClient) -> None:
    body = PNG + b"\0" * 40_000
    response = small_limit_client.post(
        "/api/v1/ocr/submit", files={"file": ("big.png", body)}
    )

    error = assert_error(response, 413, "file_too_large")
    assert "20000" in error["message"]
    assert_nothing_kept(small_limit_client.app_settings)


def test_too_large_by_stream(small_limit_client: TestClient) -> None:
    # Within the multipart allowance, so only the streamed byte count can catch it.
    body = PNG + b"\0" * (20_001 - len(PNG))
    response = small_limit_client.post(
        "/api/v1/ocr/submit", files={"file": ("big.png", body)}
    )

    assert_error(response, 413, "file_too_large")
    assert_nothing_kept(small_limit_client.app_settings)


def test_too_large_chunked(small_limit_client: TestClient) -> None:
    boundary = "pindai-test-boundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head + PNG
        for _ in range(10):
            yield b"\0" * 8192
        yield f"\r\n--{boundary}--\r\n".encode()

    response = small_limit_client.post(
        "/api/v1/ocr/submit",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert "content-length" not in response.request.headers
    assert_error(response, 413, "file_too_large")
    assert_nothing_kept(small_limit_client.app_settings)


def test_exact_limit_accepted(small_limit_client: TestClient) -> None:
    body = PNG + b"\0" * (20_000 - len(PNG))
    response = small_limit_client.post(
        "/api/v1/ocr/submit", files={"file": ("edge.png", body)}
    )

    assert response.status_code == 202


@pytest.mark.parametrize(
    ("files", "data", "fragment"),
    [
        ({"other": (None, "x")}, {}, "Unknown form field 'other'"),
        ({"upload": ("scan.png", PNG)}, {}, "Unknown form field 'upload'"),
        ([("file", ("a.png", PNG)), ("file", ("b.png", PNG))], {}, "more than one"),
    ],
)
def test_malformed_form_rejected(
    client: TestClient, settings: Settings, files, data, fragment: str
) -> None:
    response = client.post("/api/v1/ocr/submit", files=files, data=data)

    error = assert_error(response, 422, "invalid_request")
    assert fragment in error["message"]
    assert_nothing_kept(settings)


def test_missing_file_field(client: TestClient, settings: Settings) -> None:
    boundary = "b"
    response = client.post(
        "/api/v1/ocr/submit",
        content=f"--{boundary}--\r\n".encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    error = assert_error(response, 422, "invalid_request")
    assert "no 'file' field" in error["message"]
    assert_nothing_kept(settings)


def test_truncated_multipart_rejected(client: TestClient, settings: Settings) -> None:
    boundary = "b"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    ).encode() + PNG
    response = client.post(
        "/api/v1/ocr/submit",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    error = assert_error(response, 422, "invalid_request")
    assert "closing boundary" in error["message"]
    assert_nothing_kept(settings)


def test_non_multipart_rejected(client: TestClient, settings: Settings) -> None:
    response = client.post(
        "/api/v1/ocr/submit", content=PNG, headers={"Content-Type": "image/png"}
    )

    error = assert_error(response, 415, "unsupported_media_type")
    assert "multipart/form-data" in error["message"]
    assert_nothing_kept(settings)


def test_empty_filename_accepted(client: TestClient) -> None:
    response = client.post("/api/v1/ocr/submit", files={"file": ("", PNG)})

    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert client.get(f"/api/v1/ocr/result/{job_id}").json()["filename"] is None


def test_long_filename_cut(client: TestClient) -> None:
    response = client.post(
        "/api/v1/ocr/submit", files={"file": ("a" * 300 + ".png", PNG)}
    )

    job_id = response.json()["job_id"]
    filename = client.get(f"/api/v1/ocr/result/{job_id}").json()["filename"]
    assert len(filename) == 255


def test_redis_down_gives_503(tmp_path: Path) -> None:
    settings = make_settings(
        "redis://127.0.0.1:9/0", tmp_path / "storage", REDIS_TIMEOUT_SECONDS=0.5
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/api/v1/ocr/submit", files={"file": ("a.png", PNG)})

        assert_error(response, 503, "queue_unavailable")
        assert int(response.headers["retry-after"]) > 0
        assert stored_files(settings) == []


def test_job_record_has_ttl(client: TestClient, settings: Settings) -> None:
    response = client.post("/api/v1/ocr/submit", files={"file": ("a.png", PNG)})
    job_id = response.json()["job_id"]

    ttl = Redis.from_url(settings.REDIS_URL).ttl(job_key(job_id))
    assert 0 < ttl <= settings.RESULT_TTL_SECONDS


def test_long_boundary_rejected(client: TestClient, settings: Settings) -> None:
    boundary = "B" * 300
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        ).encode()
        + PNG
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.post(
        "/api/v1/ocr/submit",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert_error(response, 422, "invalid_request")
    assert_nothing_kept(settings)


def test_trailing_slash_is_not_found(client: TestClient) -> None:
    response = client.post(
        "/api/v1/ocr/submit/", files={"file": ("a.png", PNG)}, follow_redirects=False
    )

    assert_error(response, 404, "not_found")


class SlowRequest:
    """Stands in for a Starlette request whose body arrives with pauses."""

    def __init__(self, chunks: list[bytes], pause_s: float) -> None:
        self.chunks = chunks
        self.pause_s = pause_s

    async def stream(self):
        for chunk in self.chunks:
            yield chunk
            await asyncio.sleep(self.pause_s)


def collect(request: SlowRequest, limits: UploadLimits) -> list[bytes]:
    async def run() -> list[bytes]:
        return [chunk async for chunk in body_chunks(request, limits)]

    return anyio.run(run)


def test_stalled_upload_times_out() -> None:
    limits = UploadLimits(max_bytes=100, total_s=10, idle_s=0.2)

    with pytest.raises(UploadTimeout, match="stalled"):
        collect(SlowRequest([b"a", b"b"], pause_s=0.5), limits)


def test_slow_upload_times_out() -> None:
    limits = UploadLimits(max_bytes=100, total_s=0.5, idle_s=0.3)

    with pytest.raises(UploadTimeout):
        collect(SlowRequest([b"x"] * 10, pause_s=0.2), limits)


def test_steady_upload_passes() -> None:
    limits = UploadLimits(max_bytes=100, total_s=5, idle_s=0.5)

    assert collect(SlowRequest([b"a", b"b", b"c"], pause_s=0.05), limits) == [
        b"a",
        b"b",
        b"c",
    ]


def test_rejected_upload_leaves_no_directory(
    client: TestClient, settings: Settings
) -> None:
    files = [("file", ("a.png", PNG)), ("file", ("b.png", PNG))]
    client.post("/api/v1/ocr/submit", files=files)

    jobs = Path(settings.STORAGE_DIR) / "jobs"
    assert not jobs.exists() or list(jobs.iterdir()) == []
