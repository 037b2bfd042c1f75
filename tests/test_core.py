"""Ids, file-type sniffing, the Procfile, the error table and job-record transitions."""

import json
import re
import sys
from pathlib import Path

import pytest
from redis import Redis

from bench.report import accuracy_table
from core.errors import ERROR_SPECS, ErrorCode, OcrTimeout, error_for_code
from core.filetypes import FileType, sniff_file_type
from core.ids import is_job_id, is_request_id, new_job_id, sanitize_filename
from core.jobs import JobRecord, JobStatus, PageOutcome, job_key, pages_key
from core.jobstore import JobStore
from core.procfile import read_procfile
from core.settings import Settings
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from error_table import render_error_table  # noqa: E402


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("scan.pdf", "scan.pdf"),
        ("../../../../etc/passwd.png", "passwd.png"),
        ("/etc/cron.d/ocr.png", "ocr.png"),
        ("C:\\Users\\me\\scan.jpg", "scan.jpg"),
        ("bad\r\nname.png", "badname.png"),
        ("  spaced.png  ", "spaced.png"),
        ("..", None),
        ("", None),
        (None, None),
        ("x" * 300, "x" * 255),
    ],
)
def test_sanitize_filename(raw: str | None, expected: str | None) -> None:
    assert sanitize_filename(raw) == expected


def test_job_ids_unique_and_valid() -> None:
    ids = {new_job_id() for _ in range(1000)}

    assert len(ids) == 1000
    assert all(is_job_id(job_id) for job_id in ids)
    assert not is_job_id("../" + "0" * 29)


def test_request_id_rules() -> None:
    assert is_request_id("abc.DEF_123-x")
    assert not is_request_id("a" * 129)
    assert not is_request_id("a\r\nX-Injected: 1")
    assert not is_request_id("")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\nrest", FileType.PNG),
        (b"\xff\xd8\xff\xe0rest", FileType.JPEG),
        (b"%PDF-1.7\n", FileType.PDF),
        (b"GIF89a", None),
        (b"<svg xmlns=", None),
        (b"junk %PDF-1.7", None),
        (b"", None),
    ],
)
def test_sniff_file_type(head: bytes, expected: FileType | None) -> None:
    assert sniff_file_type(head) == expected


def test_procfile_commands() -> None:
    commands = read_procfile()

    assert set(commands) == {"web", "worker"}
    assert commands["web"].startswith("uvicorn api.main:app ")
    assert commands["worker"].startswith("rq worker --url ")
    assert commands["worker"].endswith(" default webhooks pages")


def test_procfile_rejects_bad_line(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("web uvicorn\n")

    with pytest.raises(ValueError, match="Procfile:1"):
        read_procfile(procfile)


def test_every_code_has_spec() -> None:
    assert set(ERROR_SPECS) == set(ErrorCode)


def test_error_for_code() -> None:
    error = error_for_code("ocr_timeout", "slow page")

    assert isinstance(error, OcrTimeout)
    assert error.message == "slow page"
    assert error_for_code("no_such_code").code == ErrorCode.INTERNAL_ERROR


def test_readme_error_table_current() -> None:
    readme = (ROOT / "README.md").read_text()

    assert render_error_table() in readme, "run `make error-table` and paste it"


def test_readme_accuracy_table_current() -> None:
    readme = (ROOT / "README.md").read_text()
    report = json.loads((ROOT / "docs" / "benchmarks.json").read_text())

    table = "\n".join(accuracy_table(report["accuracy"]))

    assert table in readme, "paste bench.report's accuracy table into the README"


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    configuration = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]

    missing = [
        name for name in Settings.model_fields if f"`{name}`" not in configuration
    ]

    assert missing == []


@pytest.fixture
def store(redis_url: str, tmp_path: Path) -> JobStore:
    settings = make_settings(redis_url, tmp_path, RESULT_TTL_SECONDS=600)
    return JobStore(Redis.from_url(redis_url), settings)


def new_record(job_id: str) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        status=JobStatus.QUEUED,
        file_type="png",
        filename=None,
        sha256="0" * 64,
        size_bytes=10,
        request_id="r1",
        created_at="2026-01-01T00:00:00.000Z",
    )


def create(store: JobStore, job_id: str) -> None:
    with store.redis.pipeline() as pipeline:
        store.create(new_record(job_id), pipeline)
        pipeline.execute()


def test_record_roundtrip(store: JobStore) -> None:
    create(store, "a" * 32)

    record = store.get("a" * 32)
    assert record == new_record("a" * 32)
    assert 0 < store.redis.ttl(job_key("a" * 32)) <= 600


def test_lifecycle_transitions(store: JobStore) -> None:
    job_id = "b" * 32
    create(store, job_id)

    assert not store.finish(job_id, partial=False)
    assert store.mark_started(job_id)
    assert not store.mark_started(job_id)
    assert store.finish(job_id, partial=True)
    assert not store.fail(job_id, "ocr_failed", "late failure")

    record = store.get(job_id)
    assert record.status == JobStatus.FINISHED
    assert record.partial is True
    assert record.error_code is None
    assert record.duration_ms is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record.finished_at)


def test_fail_from_queued(store: JobStore) -> None:
    job_id = "c" * 32
    create(store, job_id)

    assert store.fail(job_id, "worker_lost", "gone")
    record = store.get(job_id)
    assert record.status == JobStatus.FAILED
    assert record.error_code == "worker_lost"
    assert not store.mark_started(job_id)


def test_record_page_counts(store: JobStore) -> None:
    job_id = "d" * 32
    create(store, job_id)
    store.mark_started(job_id)
    store.set_page_count(job_id, 2, deadline_seconds=60)

    first = store.record_page(job_id, PageOutcome(page=2, duration_ms=5))
    again = store.record_page(job_id, PageOutcome(page=2, duration_ms=9))
    last = store.record_page(
        job_id, PageOutcome(page=1, duration_ms=7, error_code="ocr_timeout")
    )

    assert first.recorded
    assert not first.completes_job
    assert not again.recorded
    assert last.recorded
    assert last.completes_job

    assert store.get(job_id).pages_done == 2
    pages = store.get_pages(job_id)
    assert [page.page for page in pages] == [1, 2]
    assert pages[0].ok is False
    assert pages[1].ok is True
    assert json.loads(store.redis.hget(pages_key(job_id), "2"))["duration_ms"] == 5


def test_record_page_after_expiry(store: JobStore) -> None:
    job_id = "e" * 32

    assert not store.record_page(job_id, PageOutcome(page=1, duration_ms=1)).recorded
    assert store.redis.exists(job_key(job_id), pages_key(job_id)) == 0


def test_missing_record(store: JobStore) -> None:
    assert store.get("f" * 32) is None
    assert not store.fail("f" * 32, "ocr_failed", "x")
    assert store.redis.exists(job_key("f" * 32)) == 0


def test_deadline_listed_when_overdue(store: JobStore) -> None:
    job_id = "9" * 32
    create(store, job_id)
    store.mark_started(job_id)
    store.set_page_count(job_id, 3, deadline_seconds=-1)

    assert store.get(job_id).deadline_at is not None
    assert store.overdue_jobs() == [job_id]
    store.finish(job_id, partial=False)
    assert store.overdue_jobs() == []


def test_end_publishes_event(store: JobStore) -> None:
    job_id = "8" * 32
    create(store, job_id)
    pubsub = store.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"pindai:job:{job_id}:events")
    pubsub.get_message(timeout=1)

    store.cancel(job_id)

    message = pubsub.get_message(timeout=2)
    assert message is not None
    assert message["data"] == b"failed"
    assert store.get(job_id).error_code == "cancelled"
    pubsub.close()


def test_delete_removes_records(store: JobStore) -> None:
    job_id = "7" * 32
    create(store, job_id)
    store.mark_started(job_id)
    store.record_page(job_id, PageOutcome(page=1, duration_ms=1))

    store.delete(job_id)

    assert store.get(job_id) is None
    assert store.redis.exists(job_key(job_id), pages_key(job_id)) == 0
