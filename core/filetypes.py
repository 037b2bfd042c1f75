"""File type detection from a file's first bytes, never from its name or headers."""

from enum import StrEnum


class FileType(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    PDF = "pdf"
    TIFF = "tiff"
    WEBP = "webp"


# Types whose pages fan out like a PDF's: the document is probed, then one queue
# item is read per page.
PAGED_TYPES = frozenset({FileType.PDF, FileType.TIFF})

_SIGNATURES: tuple[tuple[bytes, FileType], ...] = (
    (b"\x89PNG\r\n\x1a\n", FileType.PNG),
    (b"\xff\xd8\xff", FileType.JPEG),
    (b"%PDF-", FileType.PDF),
    # Classic TIFF, little-endian and big-endian byte order.
    (b"II*\x00", FileType.TIFF),
    (b"MM\x00*", FileType.TIFF),
)
# A WebP file is a RIFF container whose form type, at offset 8, is WEBP.
_RIFF, _WEBP = b"RIFF", b"WEBP"

SNIFF_BYTES = 12
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
    if head.startswith(_RIFF) and head[8:12] == _WEBP:
        return FileType.WEBP
    return None
