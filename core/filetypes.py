"""File type detection from a file's first bytes, never from its name or headers."""

from enum import StrEnum


class FileType(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    PDF = "pdf"


_SIGNATURES: tuple[tuple[bytes, FileType], ...] = (
    (b"\x89PNG\r\n\x1a\n", FileType.PNG),
    (b"\xff\xd8\xff", FileType.JPEG),
    (b"%PDF-", FileType.PDF),
)

SNIFF_BYTES = max(len(signature) for signature, _ in _SIGNATURES)
"""How many leading bytes `sniff_file_type` needs to decide."""


def sniff_file_type(head: bytes) -> FileType | None:
    """Return the type whose signature starts `head`, or None for anything else.

    The signature must sit at offset 0. poppler would also accept a PDF header later
    in the first kilobyte, but such files are rejected so that one rule decides the
    type for the API and the workers alike.
    """
    for signature, file_type in _SIGNATURES:
        if head.startswith(signature):
            return file_type
    return None
