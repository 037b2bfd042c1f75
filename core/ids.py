"""Job ids, request ids and client file names: generation and validation."""

import re
import unicodedata
import uuid
from pathlib import PurePosixPath, PureWindowsPath

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_FILENAME_CHARS = 255


def new_job_id() -> str:
    """Return a random, unguessable job id (122 random bits, lowercase hex)."""
    return uuid.uuid4().hex


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID.fullmatch(value))


def new_request_id() -> str:
    return uuid.uuid4().hex


def is_request_id(value: str) -> bool:
    """Accept a client's request id only if it is a short token, safe to log."""
    return bool(_REQUEST_ID.fullmatch(value))


def sanitize_filename(raw: str | None) -> str | None:
    """Reduce a client's file name to a printable base name kept only as metadata.

    Directory parts (POSIX or Windows), control characters and surrounding blanks are
    dropped and the result is cut to 255 characters. The name never becomes a path or
    an object key.
    """
    if not raw:
        return None
    name = PureWindowsPath(PurePosixPath(raw).name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        return None
    return name[:MAX_FILENAME_CHARS]
