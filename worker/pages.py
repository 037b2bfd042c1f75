"""OCR of one page: render it (PDF) or take the prepared image, then run Tesseract."""

import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import OcrTimeout, PindaiError
from core.jobs import PageOutcome
from core.settings import Settings
from worker.images import PreparedImage
from worker.process import ToolTimeout
from worker.rasterize import fit_dpi, render_page
from worker.tesseract import recognize_text

# A page narrower or shorter than this many pixels at its resolution reads as empty.
MIN_PAGE_PIXELS = 8


@dataclass(frozen=True)
class PageText:
    outcome: PageOutcome
    text: str | None


def _limits(settings: Settings) -> int:
    return settings.TOOL_MEMORY_LIMIT_MB * 1024 * 1024


def ocr_pdf_page(
    pdf: Path,
    page: int,
    workdir: Path,
    *,
    settings: Settings,
    dpi: int,
    size_points: tuple[float, float] | None,
) -> PageText:
    """Render and read one PDF page; a failure becomes the page's outcome."""
    started = time.monotonic()
    if size_points is not None and min(size_points) * dpi / 72 < MIN_PAGE_PIXELS:
        # Too small to hold readable text; rendering it would give a 1x1 image that
        # looks like pdftoppm's allocation failure.
        outcome = PageOutcome(
            page=page, duration_ms=_elapsed_ms(started), extra={"dpi": dpi, "chars": 0}
        )
        return PageText(outcome, "")
    try:
        dpi = fit_dpi(size_points, dpi, settings.MAX_IMAGE_PIXELS)
        render_started = time.monotonic()
        image = render_page(
            pdf,
            page,
            workdir,
            dpi=dpi,
            timeout_s=settings.RASTER_TIMEOUT_SECONDS,
            memory_limit_bytes=_limits(settings),
            size_points=size_points,
        )
    except ToolTimeout as error:
        message = f"Rendering the page took longer than {error.timeout_s:g} s."
        return _failed(page, OcrTimeout(message), started, dpi)
    except PindaiError as error:
        return _failed(page, error, started, dpi)
    timings = {"render_ms": _elapsed_ms(render_started)}
    try:
        return _recognize(page, image, dpi, settings, started, timings)
    finally:
        image.unlink(missing_ok=True)


def ocr_prepared_image(image: PreparedImage, *, settings: Settings) -> PageText:
    """Read an image already validated and converted by `prepare_image`."""
    return _recognize(1, image.path, image.dpi, settings, time.monotonic())


def _recognize(
    page: int,
    image: Path,
    dpi: int | None,
    settings: Settings,
    started: float,
    timings: dict[str, int] | None = None,
) -> PageText:
    ocr_started = time.monotonic()
    try:
        text = recognize_text(
            image,
            lang=settings.OCR_LANG,
            dpi=dpi,
            timeout_s=settings.PAGE_TIMEOUT_SECONDS,
            memory_limit_bytes=_limits(settings),
        )
    except PindaiError as error:
        return _failed(page, error, started, dpi)
    outcome = PageOutcome(
        page=page,
        duration_ms=_elapsed_ms(started),
        extra={
            "dpi": dpi,
            "chars": len(text),
            **(timings or {}),
            "ocr_ms": _elapsed_ms(ocr_started),
        },
    )
    return PageText(outcome, text)


def _failed(page: int, error: PindaiError, started: float, dpi: int | None) -> PageText:
    outcome = PageOutcome(
        page=page,
        duration_ms=_elapsed_ms(started),
        error_code=error.code,
        error_message=error.message,
        extra={"dpi": dpi},
    )
    return PageText(outcome, None)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
