"""OCR options (lang, pages, dpi, psm, mode, outputs), the languages route, and the
checks that reject bad values before anything is stored or queued.
"""

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from core.heartbeats import record_heartbeat
from core.ocr_options import format_page_ranges, parse_page_ranges
from core.settings import Settings
from tests.conftest import CASES
from tests.test_api_s3 import bucket_state, ticket

PNG = (CASES / "ok_rgb.png").read_bytes()


def submit(client: TestClient, **fields: str):
    return client.post(
        "/api/v1/ocr/submit", files={"file": ("scan.png", PNG)}, data=fields
    )


def stored_sources(settings: Settings) -> list[Path]:
    return sorted(Path(settings.STORAGE_DIR).rglob("source"))


def publish_languages(settings: Settings, *languages: str) -> None:
    record_heartbeat(Redis.from_url(settings.REDIS_URL), "test-worker", list(languages))


@pytest.mark.parametrize(
    ("fields", "stored"),
    [
        ({}, {"mode": "auto", "outputs": ["text"]}),
        ({"lang": "eng"}, {"mode": "auto", "outputs": ["text"], "lang": "eng"}),
        ({"pages": "1-3,7"}, {"mode": "auto", "outputs": ["text"], "pages": "1-3,7"}),
        ({"dpi": "300"}, {"mode": "auto", "outputs": ["text"], "dpi": 300}),
        ({"psm": "6"}, {"mode": "auto", "outputs": ["text"], "psm": 6}),
        ({"mode": "force"}, {"mode": "force", "outputs": ["text"]}),
        (
            {"outputs": "pdf,words"},
            {"mode": "auto", "outputs": ["text", "words", "pdf"]},
        ),
        (
            {"outputs": "hocr,text"},
            {"mode": "auto", "outputs": ["text", "hocr"]},
        ),
    ],
)
def test_valid_option_stored(
    client: TestClient, settings: Settings, fields: dict, stored: dict
) -> None:
    response = submit(client, **fields)

    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    result = client.get(f"/api/v1/ocr/result/{job_id}").json()
    assert result["options"] == stored
    rq_job = Job.fetch(
        f"{job_id}-image",
        connection=Redis.from_url(settings.REDIS_URL),
        serializer=JSONSerializer,
    )
    assert rq_job.args[2] == stored


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"lang": "xyz"}, "lang"),
        ({"lang": "osd"}, "lang"),
        ({"lang": "eng+"}, "lang"),
        ({"lang": "../../etc"}, "lang"),
        ({"pages": "0"}, "pages"),
        ({"pages": "3-1"}, "pages"),
        ({"pages": "1-999999"}, "pages"),
        ({"pages": "a"}, "pages"),
        ({"pages": "1,,2"}, "pages"),
        ({"dpi": "69"}, "dpi"),
        ({"dpi": "601"}, "dpi"),
        ({"dpi": "high"}, "dpi"),
        ({"psm": "0"}, "psm"),
        ({"psm": "2"}, "psm"),
        ({"psm": "14"}, "psm"),
        ({"mode": "fast"}, "mode"),
        ({"outputs": "xml"}, "outputs"),
        ({"outputs": "text,docx"}, "outputs"),
    ],
)
def test_invalid_option_rejected(
    client: TestClient, settings: Settings, fields: dict, named: str
) -> None:
    response = submit(client, **fields)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert named in error["message"]
    assert stored_sources(settings) == []
    assert Redis.from_url(settings.REDIS_URL).llen("rq:queue:default") == 0


def test_lang_checked_against_workers(client: TestClient, settings: Settings) -> None:
    before = submit(client, lang="eng+ind")
    publish_languages(settings, "eng", "ind", "osd")
    after = submit(client, lang="eng+ind")

    assert before.status_code == 422
    assert "available: eng" in before.json()["error"]["message"]
    assert after.status_code == 202


def test_languages_route_lists_union(client: TestClient, settings: Settings) -> None:
    without_workers = client.get("/api/v1/ocr/languages").json()
    redis = Redis.from_url(settings.REDIS_URL)
    record_heartbeat(redis, "worker-a", ["eng", "osd"])
    record_heartbeat(redis, "worker-b", ["eng", "ind"])
    with_workers = client.get("/api/v1/ocr/languages").json()

    assert without_workers == {
        "languages": ["eng"],
        "default": "eng",
        "orientation_detection": False,
    }
    assert with_workers["languages"] == ["eng", "ind"]
    assert with_workers["orientation_detection"] is True


def test_options_as_json_on_jobs(s3_api: TestClient, s3_settings: Settings) -> None:
    upload = ticket(s3_api)
    httpx.put(upload["url"], content=PNG, headers=upload["headers"])
    body = {"upload_id": upload["upload_id"], "outputs": ["words", "pdf"], "psm": 4}

    rejected = s3_api.post("/api/v1/ocr/jobs", json={**body, "psm": 2})
    accepted = s3_api.post("/api/v1/ocr/jobs", json=body)

    assert rejected.status_code == 422
    assert "psm" in rejected.json()["error"]["message"]
    assert accepted.status_code == 202, accepted.text
    result = s3_api.get(accepted.headers["location"]).json()
    assert result["options"]["outputs"] == ["text", "words", "pdf"]
    assert result["options"]["psm"] == 4
    assert f"jobs/{upload['upload_id']}/source" in bucket_state(s3_settings)[0]


def test_output_not_requested(client: TestClient) -> None:
    job_id = submit(client).json()["job_id"]

    response = client.get(f"/api/v1/ocr/result/{job_id}/words")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "output_not_found"
    assert "outputs" in response.json()["error"]["message"]


def test_output_before_finish(client: TestClient) -> None:
    job_id = submit(client, outputs="words").json()["job_id"]

    response = client.get(f"/api/v1/ocr/result/{job_id}/words")

    assert response.status_code == 404
    assert "queued" in response.json()["error"]["message"]


def test_unknown_output_name(client: TestClient) -> None:
    job_id = submit(client).json()["job_id"]

    response = client.get(f"/api/v1/ocr/result/{job_id}/docx")

    assert response.status_code == 422


def test_page_ranges_round_trip() -> None:
    pages = parse_page_ranges("9,1-3,2-4,7", max_pages=20)

    assert pages == [1, 2, 3, 4, 7, 9]
    assert format_page_ranges(pages) == "1-4,7,9"
    assert json.dumps(parse_page_ranges("5", max_pages=1)) == "[5]"
