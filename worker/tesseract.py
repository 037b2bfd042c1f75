"""Text recognition with the `tesseract` command.

pytesseract is not used: it cannot set a memory limit on the child process, and it
writes its temporary files outside the job's directory, where a killed worker would
leave them. This module calls the binary with the arguments pytesseract would.
"""

import os
from pathlib import Path

from core.errors import OcrFailed, OcrTimeout
from worker.process import ToolTimeout, run_tool


def _tesseract_env() -> dict[str, str]:
    # Each worker OCRs one page per process already; Tesseract's own OpenMP threads
    # then compete for the same cores and make pages several times slower.
    return dict(os.environ, OMP_THREAD_LIMIT="1")


def recognize_text(
    image: Path,
    *,
    lang: str,
    dpi: int | None,
    timeout_s: float,
    memory_limit_bytes: int,
) -> str:
    """Return the text Tesseract reads on `image`, without form feeds or end blanks.

    Raises OcrTimeout past `timeout_s` (the process is killed) and OcrFailed when
    Tesseract exits with an error or writes no output file.
    """
    output_base = image.with_name(f"{image.stem}-ocr")
    arguments = ["tesseract", str(image), str(output_base), "-l", lang]
    if dpi is not None:
        arguments += ["--dpi", str(dpi)]
    try:
        result = run_tool(
            arguments,
            timeout_s=timeout_s,
            memory_limit_bytes=memory_limit_bytes,
            env=_tesseract_env(),
        )
    except ToolTimeout as error:
        raise OcrTimeout(
            f"Tesseract did not finish the page within {timeout_s:g} s."
        ) from error

    output = output_base.with_suffix(".txt")
    try:
        if result.returncode != 0:
            raise OcrFailed(f"Tesseract failed: {result.last_error_line()}")
        if not output.is_file():
            raise OcrFailed("Tesseract exited normally but wrote no output.")
        text = output.read_text(encoding="utf-8", errors="replace")
    finally:
        output.unlink(missing_ok=True)
    return clean_text(text)


def clean_text(text: str) -> str:
    """Drop Tesseract's form-feed page separator and blank trailing lines."""
    lines = [line.rstrip() for line in text.replace("\f", "").splitlines()]
    return "\n".join(lines).strip("\n")
