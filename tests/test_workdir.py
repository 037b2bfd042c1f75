"""Per-job temporary directories and the removal of those left by killed workers."""

import os
import subprocess
from pathlib import Path

from worker.workdir import job_directory, remove_stale_directories


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_job_directory_removed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with job_directory() as directory:
        (directory / "page.pgm").write_bytes(b"x")
        assert directory.name.startswith(f"pindai-job-{os.getpid()}-")

    assert not directory.exists()


def test_stale_directories_removed(tmp_path: Path) -> None:
    stale = tmp_path / f"pindai-job-{dead_pid()}-abc"
    stale.mkdir()
    (stale / "source").write_bytes(b"x")
    live = tmp_path / f"pindai-job-{os.getpid()}-def"
    live.mkdir()
    unrelated = tmp_path / "other-dir"
    unrelated.mkdir()

    assert remove_stale_directories(tmp_path) == 1
    assert not stale.exists()
    assert live.exists()
    assert unrelated.exists()
