"""The OCR options of a job, as the API validates them and the workers apply them.

The API stores the validated options on the job record and passes them to the first
stage; every later stage of the job inherits them. Absent options mean the server's
defaults: OCR_LANG, the per-page resolution choice, Tesseract's page segmentation
mode 3, text-layer reuse (mode `auto`) and the `text` output only.
"""

import re
from enum import StrEnum

MIN_DPI = 70
MAX_DPI = 600
# Page segmentation modes that produce text: 0 only detects orientation, and 2 is
# not implemented by Tesseract.
ALLOWED_PSM = frozenset({1, *range(3, 14)})
MAX_LANGUAGES = 8
# Tesseract's orientation and script detection data, needed to rotate pages.
OSD_LANGUAGE = "osd"
MAX_PAGE_RANGES = 100
# A page layer counts as text when it has this many non-blank characters; scanners
# often put a few stray characters in an otherwise empty layer.
MIN_TEXT_LAYER_CHARS = 20

LANG_PATTERN = r"^[A-Za-z_]{2,40}(\+[A-Za-z_]{2,40}){0,7}$"
PAGES_PATTERN = r"^\d{1,6}(-\d{1,6})?(,\d{1,6}(-\d{1,6})?)*$"


class Mode(StrEnum):
    """Whether PDF pages with a text layer are read from it or OCRed anyway."""

    AUTO = "auto"
    FORCE = "force"


class Output(StrEnum):
    TEXT = "text"
    WORDS = "words"
    HOCR = "hocr"
    PDF = "pdf"


# The media type each output is served with.
OUTPUT_MEDIA_TYPES = {
    Output.TEXT: "text/plain; charset=utf-8",
    Output.WORDS: "application/json",
    Output.HOCR: "text/html; charset=utf-8",
    Output.PDF: "application/pdf",
}


def parse_page_ranges(value: str, max_pages: int) -> list[int]:
    """Return the sorted, distinct page numbers of a selection such as `1-3,7`.

    Raises ValueError naming the problem: a zero page, a range that runs backwards,
    more than MAX_PAGE_RANGES ranges, or more than `max_pages` pages in all. The
    count is taken before the numbers are listed, so `1-999999` costs nothing.
    """
    if not re.fullmatch(PAGES_PATTERN, value):
        raise ValueError("use page numbers and ranges such as 1-3,7")
    items = value.split(",")
    if len(items) > MAX_PAGE_RANGES:
        raise ValueError(f"use at most {MAX_PAGE_RANGES} ranges")
    intervals = []
    for item in items:
        first, _, last = item.partition("-")
        start, end = int(first), int(last or first)
        if start < 1:
            raise ValueError("pages are numbered from 1")
        if end < start:
            raise ValueError(f"the range {item} runs backwards")
        intervals.append((start, end))

    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    count = sum(end - start + 1 for start, end in merged)
    if count > max_pages:
        raise ValueError(
            f"{count} pages are selected; the limit is {max_pages} (MAX_PAGES)"
        )
    return [page for start, end in merged for page in range(start, end + 1)]


def format_page_ranges(pages: list[int]) -> str:
    """Return the range text of sorted distinct `pages`: [1, 2, 3, 7] gives 1-3,7."""
    parts = []
    start = previous = None
    for page in pages:
        if previous is not None and page == previous + 1:
            previous = page
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = page
    if start is not None:
        parts.append(str(start) if start == previous else f"{start}-{previous}")
    return ",".join(parts)


def split_languages(lang: str) -> list[str]:
    return [name for name in lang.split("+") if name]
