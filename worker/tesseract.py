"""Text recognition with the `tesseract` command.

pytesseract is not used: it cannot set a memory limit on the child process, and it
writes its temporary files outside the job's directory, where a killed worker would
leave them. This module calls the binary with the arguments pytesseract would.
"""

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import OcrFailed, OcrTimeout
from core.ocr_options import OSD_LANGUAGE
from worker.process import ToolResult, ToolTimeout, run_tool


def _run_tesseract(
    arguments: list[str], timeout_s: float, memory_limit_bytes: int
) -> ToolResult:
    # Each worker OCRs one page per process already; Tesseract's own OpenMP threads
    # then compete for the same cores and make pages several times slower.
    return run_tool(
        arguments,
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
        env=dict(os.environ, OMP_THREAD_LIMIT="1"),
    )


@dataclass
class Recognition:
    """The result of one Tesseract run: text, words and the requested renderings."""

    text: str
    words: list[dict[str, Any]]
    hocr: str | None = None
    # A one-page PDF of the image with an invisible text layer, in the work directory.
    pdf: Path | None = None
    # The resolution Tesseract assumed for an image that did not state one.
    estimated_dpi: int | None = None


@dataclass(frozen=True)
class Orientation:
    """Tesseract's orientation estimate: clockwise degrees to make the page upright."""

    rotate: int
    confidence: float


def recognize(
    image: Path,
    *,
    lang: str,
    dpi: int | None,
    psm: int | None = None,
    hocr: bool = False,
    pdf: bool = False,
    timeout_s: float,
    memory_limit_bytes: int,
) -> Recognition:
    """Read `image` once, writing text, TSV words and, if asked, hOCR and a PDF.

    One Tesseract run produces every rendering, so they all describe the same
    recognition. Raises OcrTimeout past `timeout_s` (the process is killed) and
    OcrFailed when Tesseract exits with an error or writes no text.
    """
    output_base = image.with_name(f"{image.stem}-ocr")
    arguments = ["tesseract", str(image), str(output_base), "-l", lang]
    if dpi is not None:
        arguments += ["--dpi", str(dpi)]
    if psm is not None:
        arguments += ["--psm", str(psm)]
    arguments += ["txt", "tsv"]
    if hocr:
        arguments.append("hocr")
    if pdf:
        arguments.append("pdf")
    text_file = output_base.with_suffix(".txt")
    tsv_file = output_base.with_suffix(".tsv")
    hocr_file = output_base.with_suffix(".hocr")
    pdf_file = output_base.with_suffix(".pdf")
    keep_pdf = False
    try:
        try:
            result = _run_tesseract(arguments, timeout_s, memory_limit_bytes)
        except ToolTimeout as error:
            raise OcrTimeout(
                f"Tesseract did not finish the page within {timeout_s:g} s."
            ) from error
        if result.returncode != 0:
            raise OcrFailed(f"Tesseract failed: {result.last_error_line()}")
        if not text_file.is_file():
            raise OcrFailed("Tesseract exited normally but wrote no output.")
        text = clean_text(text_file.read_text(encoding="utf-8", errors="replace"))
        words = []
        if tsv_file.is_file():
            words = parse_tsv(tsv_file.read_text(encoding="utf-8", errors="replace"))
        recognition = Recognition(text=text, words=words)
        estimate = re.search(rb"Estimating resolution as (\d+)", result.stderr)
        if estimate is not None:
            recognition.estimated_dpi = int(estimate.group(1))
        if hocr and hocr_file.is_file():
            recognition.hocr = hocr_file.read_text(encoding="utf-8", errors="replace")
        if pdf and pdf_file.is_file():
            recognition.pdf = pdf_file
            keep_pdf = True
        return recognition
    finally:
        # A killed Tesseract leaves partial files too: only the PDF handed back stays.
        for leftover in (text_file, tsv_file, hocr_file):
            leftover.unlink(missing_ok=True)
        if not keep_pdf:
            pdf_file.unlink(missing_ok=True)


def recognize_text(
    image: Path,
    *,
    lang: str,
    dpi: int | None,
    timeout_s: float,
    memory_limit_bytes: int,
) -> str:
    """Return the text Tesseract reads on `image`, without form feeds or end blanks."""
    return recognize(
        image,
        lang=lang,
        dpi=dpi,
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
    ).text


def parse_tsv(tsv: str) -> list[dict[str, Any]]:
    """Return the words of Tesseract's TSV output with boxes and confidences.

    Each word has its text, confidence (0-100), box in pixels of the image read
    (left, top, width, height) and its block, paragraph, line and word numbers.
    """
    words = []
    lines = tsv.splitlines()
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) < 12 or fields[0] != "5":
            continue
        text = fields[11].strip()
        try:
            confidence = float(fields[10])
        except ValueError:
            continue
        if not text or confidence < 0:
            continue
        block, paragraph, line_number, word = (int(value) for value in fields[2:6])
        left, top, width, height = (int(value) for value in fields[6:10])
        words.append(
            {
                "text": text,
                "confidence": round(confidence, 2),
                "box": [left, top, width, height],
                "block": block,
                "paragraph": paragraph,
                "line": line_number,
                "word": word,
            }
        )
    return words


def detect_orientation(
    image: Path, *, timeout_s: float, memory_limit_bytes: int
) -> Orientation | None:
    """Estimate the page's orientation with Tesseract's OSD (`--psm 0`).

    Returns None when OSD cannot decide, which Tesseract reports for pages with too
    few characters, and when it does not finish within `timeout_s`.
    """
    arguments = ["tesseract", str(image), "-", "--psm", "0", "-l", OSD_LANGUAGE]
    try:
        result = _run_tesseract(arguments, timeout_s, memory_limit_bytes)
    except ToolTimeout:
        return None
    output = result.stdout.decode(errors="replace")
    rotate = re.search(r"^Rotate: (\d+)", output, re.MULTILINE)
    confidence = re.search(r"^Orientation confidence: ([\d.]+)", output, re.MULTILINE)
    if result.returncode != 0 or rotate is None or confidence is None:
        return None
    return Orientation(
        rotate=int(rotate.group(1)) % 360, confidence=float(confidence.group(1))
    )


@functools.cache
def installed_languages(timeout_s: float = 10.0) -> list[str]:
    """Return the languages `tesseract --list-langs` reports, sorted.

    Cached: the worker runs it once at start-up, and the work horses it forks
    inherit the result.
    """
    result = run_tool(
        ["tesseract", "--list-langs"], timeout_s=timeout_s, memory_limit_bytes=0
    )
    if result.returncode != 0:
        raise OcrFailed(f"tesseract --list-langs failed: {result.last_error_line()}")
    # The first line names the data directory; each further line is one language.
    lines = result.stdout.decode(errors="replace").splitlines()[1:]
    return sorted(line.strip() for line in lines if line.strip())


def clean_text(text: str) -> str:
    """Drop Tesseract's form-feed page separator and blank trailing lines."""
    lines = [line.rstrip() for line in text.replace("\f", "").splitlines()]
    return "\n".join(lines).strip("\n")
