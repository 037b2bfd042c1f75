"""The document-level outputs, assembled from per-page parts when a job ends.

- `words`: one JSON document, every page with its size, resolution, rotation, source
  and words (text, confidence, box in pixels, block, paragraph, line and word).
- `hocr`: one hOCR (HTML) document with one `ocr_page` per page. Tesseract writes
  the hOCR of OCRed pages; pages read from a text layer get hOCR built from their
  words here.
- `pdf`: one searchable PDF: Tesseract's page image with an invisible text layer
  for OCRed pages, the original page for pages that had a text layer.
"""

import html
import json
import re
from pathlib import Path
from typing import Any

from core.errors import InternalError
from worker.process import run_tool

_HOCR_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>pindai</title>
  <meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
  <meta name="ocr-system" content="pindai (Tesseract and poppler)"/>
  <meta name="ocr-capabilities" content="ocr_page ocr_carea ocr_line ocrx_word"/>
 </head>
 <body>
"""
_HOCR_TAIL = " </body>\n</html>\n"
_PAGE_DIV = re.compile(r"<div class=['\"]ocr_page['\"].*</div>", re.DOTALL)
# Element ids in Tesseract's hOCR of a one-image run all start with page number 1.
_HOCR_ID = re.compile(
    r"(id=['\"](?:page|block|par|line|word|photo|caption|textfloat|separator))_1"
    r"(?=['\"_])"
)


def words_document(pages: list[dict[str, Any]]) -> bytes:
    """Return the `words` output: the page entries, in page order."""
    ordered = sorted(pages, key=lambda entry: entry["page"])
    return json.dumps({"pages": ordered}, ensure_ascii=False).encode("utf-8")


def hocr_from_words(page: int, words: list[dict[str, Any]], entry: dict) -> str:
    """Return an hOCR page for words read from a text layer, one line per line."""
    width, height = entry.get("width") or 0, entry.get("height") or 0
    parts = [
        f"  <div class='ocr_page' id='page_{page}' "
        f"title='bbox 0 0 {width} {height}; ppageno {page - 1}'>\n"
    ]
    lines: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for word in words:
        lines.setdefault((word["block"], word["line"]), []).append(word)
    for (block, line), members in lines.items():
        box = _union([word["box"] for word in members])
        parts.append(
            f"   <span class='ocr_line' id='line_{page}_{block}_{line}' "
            f"title='bbox {box}'>"
        )
        for word in members:
            left, top, word_width, word_height = word["box"]
            parts.append(
                f"<span class='ocrx_word' id='word_{page}_{block}_{line}_"
                f"{word['word']}' title='bbox {left} {top} {left + word_width} "
                f"{top + word_height}; x_wconf {round(word['confidence'])}'>"
                f"{html.escape(word['text'])}</span> "
            )
        parts.append("</span>\n")
    parts.append("  </div>\n")
    return _HOCR_HEAD + "".join(parts) + _HOCR_TAIL


def merge_hocr(pages: list[tuple[int, str]]) -> bytes:
    """Return one hOCR document holding the `ocr_page` of every page, in order.

    Tesseract numbers the elements of a one-image run from page 1; they are
    renumbered with each page's number so that ids stay unique.
    """
    bodies = []
    for page, document in sorted(pages):
        found = _PAGE_DIV.search(document)
        if found is None:
            continue
        body = _HOCR_ID.sub(rf"\1_{page}", found.group(0))
        body = re.sub(r"ppageno \d+", f"ppageno {page - 1}", body, count=1)
        bodies.append("  " + body + "\n")
    return (_HOCR_HEAD + "".join(bodies) + _HOCR_TAIL).encode("utf-8")


def unite_pdfs(
    parts: list[Path], output: Path, *, timeout_s: float, memory_limit_bytes: int
) -> None:
    """Join one-page PDFs into `output` with poppler's pdfunite."""
    if len(parts) == 1:
        output.write_bytes(parts[0].read_bytes())
        return
    result = run_tool(
        ["pdfunite", *map(str, parts), str(output)],
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
    )
    if result.returncode != 0 or not output.is_file():
        raise InternalError(
            f"Joining the searchable PDF failed: {result.last_error_line()}"
        )


def _union(boxes: list[list[int]]) -> str:
    left = min(box[0] for box in boxes)
    top = min(box[1] for box in boxes)
    right = max(box[0] + box[2] for box in boxes)
    bottom = max(box[1] + box[3] for box in boxes)
    return f"{left} {top} {right} {bottom}"
