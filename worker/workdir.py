"""Per-job temporary directories, and removal of those left by killed workers."""

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loguru import logger

_PREFIX = "pindai-job-"
_NAME = re.compile(rf"^{_PREFIX}(\d+)-")


@contextmanager
def job_directory() -> Iterator[Path]:
    """Yield a fresh directory for one job's files and remove it whatever happens.

    The name carries the process id, so that `remove_stale_directories` can tell the
    directories of live processes from those of killed ones.
    """
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_directories(root: Path | None = None) -> int:
    """Remove job directories whose process no longer exists; return how many."""
    root = root or Path(tempfile.gettempdir())
    removed = 0
    for path in root.glob(f"{_PREFIX}*"):
        match = _NAME.match(path.name)
        if match is None or not path.is_dir() or _process_exists(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    if removed:
        logger.info("removed stale job directories", count=removed, root=str(root))
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
