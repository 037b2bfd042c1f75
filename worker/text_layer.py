"""Reading the text layer a PDF page already carries, with poppler's `pdftotext`.

Born-digital PDFs (and scans OCRed before) have their text as text: reading it is
exact and takes milliseconds, where rendering and OCR take seconds and may misread.
"""

import html
import re
from pathlib import Path
from typing import Any

from core.ocr_options import MIN_TEXT_LAYER_CHARS
from worker.process import run_tool

_WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">'
    r"(.*?)</word>"
)
_BLOCK_OR_LINE = re.compile(r"<(block|line)\b|<word\b")


def read_text_layer(
    pdf: Path, page: int, *, timeout_s: float, memory_limit_bytes: int
) -> str | None:
    """Return the page's text layer, or None when it has none worth using.

    A layer with fewer than MIN_TEXT_LAYER_CHARS non-blank characters counts as
    none. A pdftotext failure or time-out also gives None, so the page is OCRed.
    """
    result = run_tool(
        ["pdftotext", "-f", str(page), "-l", str(page), "-enc", "UTF-8", str(pdf), "-"],
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
    )
    if result.returncode != 0:
        return None
    text = result.stdout.decode("utf-8", errors="replace").replace("\f", "")
    if sum(1 for character in text if not character.isspace()) < MIN_TEXT_LAYER_CHARS:
        return None
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip("\n")


def read_text_layer_words(
    pdf: Path, page: int, *, dpi: int, timeout_s: float, memory_limit_bytes: int
) -> list[dict[str, Any]]:
    """Return the words of the page's text layer with boxes in pixels at `dpi`.

    The boxes match a render of the page at `dpi`, as the OCR words of a rendered
    page do. Text-layer words have confidence 100, and their block and line numbers
    follow pdftotext's layout analysis.
    """
    result = run_tool(
        ["pdftotext", "-f", str(page), "-l", str(page), "-bbox-layout", str(pdf), "-"],
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
    )
    if result.returncode != 0:
        return []
    markup = result.stdout.decode("utf-8", errors="replace")
    scale = dpi / 72
    words = []
    block = line = word = 0
    for match in _BLOCK_OR_LINE.finditer(markup):
        tag = match.group(1)
        if tag == "block":
            block, line = block + 1, 0
            continue
        if tag == "line":
            line, word = line + 1, 0
            continue
        found = _WORD.match(markup, match.start())
        if found is None:
            continue
        left, top, right, bottom = (
            float(value) * scale for value in found.groups()[:4]
        )
        word += 1
        words.append(
            {
                "text": html.unescape(found.group(5)),
                "confidence": 100.0,
                "box": [
                    round(left),
                    round(top),
                    round(right - left),
                    round(bottom - top),
                ],
                "block": block,
                "paragraph": 1,
                "line": line,
                "word": word,
            }
        )
    return words


def extract_page(
    pdf: Path, page: int, output: Path, *, timeout_s: float, memory_limit_bytes: int
) -> bool:
    """Write page `page` of `pdf` as a one-page PDF; return False when that fails."""
    result = run_tool(
        ["pdfseparate", "-f", str(page), "-l", str(page), str(pdf), str(output)],
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
    )
    return result.returncode == 0 and output.is_file()
