"""A per-host cache of source documents, shared by the worker processes of one host.

Each page of a PDF is a separate RQ job. Without a cache every page would download
the whole document again, so bytes moved would grow as pages x document size. With
it, each host downloads a document once, whichever of its workers gets there first.
"""

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from storage import ObjectStorage

_CACHE_DIR = "pindai-cache"


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / _CACHE_DIR


def cached_source(storage: ObjectStorage, object_key: str, job_id: str) -> Path:
    """Return a local copy of the job's source document, downloading it if needed.

    Concurrent first calls on one host may each download. Each writes its own partial
    file and renames it into place, so readers only ever see a complete file.
    """
    path = cache_root() / job_id / "source"
    if path.is_file():
        os.utime(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"source.{uuid.uuid4().hex}.part")
    try:
        storage.download(object_key, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def drop_cached_source(job_id: str) -> None:
    shutil.rmtree(cache_root() / job_id, ignore_errors=True)


def sweep_cache(is_running: Callable[[str], bool], max_idle_seconds: float) -> int:
    """Remove cached documents of ended jobs, and any unused for `max_idle_seconds`."""
    root = cache_root()
    if not root.is_dir():
        return 0
    removed = 0
    now = time.time()
    for entry in root.iterdir():
        try:
            idle = now - entry.stat().st_mtime
            source = entry / "source"
            if source.exists():
                idle = min(idle, now - source.stat().st_mtime)
        except OSError:
            continue
        if idle > max_idle_seconds or not is_running(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    if removed:
        logger.info("removed cached sources", count=removed)
    return removed
