"""Reading one page: its text layer, or render it (PDF), turn it upright, and OCR it.

Every page outcome carries a quality summary: the resolution read at, the rotation
applied and its confidence, the word count with mean and minimum word confidence,
and whether the text came from OCR or from the PDF's own text layer.
"""

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from core.errors import OcrTimeout, PindaiError
from core.jobs import PageOutcome
from core.ocr_options import OSD_LANGUAGE, Mode, Output
from core.settings import Settings
from worker.deskew import MIN_CORRECTION_DEGREES, deskew, estimate_skew
from worker.images import PreparedImage
from worker.outputs import hocr_from_words
from worker.process import ToolTimeout
from worker.rasterize import fit_dpi, read_pgm_size, render_page
from worker.tesseract import Recognition, detect_orientation, recognize
from worker.text_layer import extract_page, read_text_layer, read_text_layer_words

# A page narrower or shorter than this many pixels at its resolution reads as empty.
MIN_PAGE_PIXELS = 8
SOURCE_OCR = "ocr"
# Below this mean word confidence a reading is checked for a turned page.
TURNED_CONFIDENCE = 60
SOURCE_TEXT_LAYER = "text_layer"

# The Pillow transposition for each clockwise rotation that OSD reports.
_TRANSPOSE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class PageRequest:
    """How to read every page of one job: its options over the server's settings."""

    lang: str
    psm: int | None
    dpi: int | None
    mode: Mode
    outputs: frozenset[Output]
    detect_orientation: bool

    @classmethod
    def from_options(
        cls, options: dict[str, Any], settings: Settings, languages: list[str]
    ) -> "PageRequest":
        """Build the request; `languages` are the ones installed on this host."""
        return cls(
            lang=str(options.get("lang") or settings.OCR_LANG),
            psm=options.get("psm"),
            dpi=options.get("dpi"),
            mode=Mode(options.get("mode", Mode.AUTO)),
            outputs=frozenset(Output(name) for name in options.get("outputs", [])),
            detect_orientation=settings.OCR_DETECT_ORIENTATION
            and OSD_LANGUAGE in languages,
        )

    @property
    def needs_words(self) -> bool:
        return Output.WORDS in self.outputs or Output.HOCR in self.outputs


@dataclass
class PageResult:
    """A page outcome and what to store for it: text and the requested outputs."""

    outcome: PageOutcome
    text: str | None
    # The page's entry of the `words` output: size, resolution, rotation, words.
    words: dict[str, Any] | None = None
    hocr: str | None = None
    # A one-page PDF in the work directory: the `pdf` output of this page.
    pdf: Path | None = None


def _limits(settings: Settings) -> int:
    return settings.TOOL_MEMORY_LIMIT_MB * 1024 * 1024


def read_pdf_page(
    pdf: Path,
    page: int,
    workdir: Path,
    *,
    request: PageRequest,
    settings: Settings,
    dpi: int,
    size_points: tuple[float, float] | None,
) -> PageResult:
    """Read one PDF page; a failure becomes the page's outcome."""
    started = time.monotonic()
    if request.dpi is not None:
        dpi = request.dpi
    if request.mode == Mode.AUTO:
        from_layer = _read_text_layer(
            pdf, page, workdir, request, settings, dpi, size_points
        )
        if from_layer is not None:
            from_layer.outcome.duration_ms = _elapsed_ms(started)
            return from_layer
    if size_points is not None and min(size_points) * dpi / 72 < MIN_PAGE_PIXELS:
        # Too small to hold readable text; rendering it would give a 1x1 image that
        # looks like pdftoppm's allocation failure.
        outcome = PageOutcome(
            page=page, duration_ms=_elapsed_ms(started), extra={"dpi": dpi, "chars": 0}
        )
        return PageResult(outcome, "")
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
        width, height = read_pgm_size(image)
        return _recognize(
            page, image, (width, height), dpi, request, settings, started, timings
        )
    finally:
        image.unlink(missing_ok=True)


def read_image(
    image: PreparedImage, page: int, *, request: PageRequest, settings: Settings
) -> PageResult:
    """Read an image already validated and converted by `prepare_image`."""
    return _recognize(
        page,
        image.path,
        (image.width, image.height),
        image.dpi,
        request,
        settings,
        time.monotonic(),
        {"source_dpi": image.source_dpi},
    )


def _read_text_layer(
    pdf: Path,
    page: int,
    workdir: Path,
    request: PageRequest,
    settings: Settings,
    dpi: int,
    size_points: tuple[float, float] | None,
) -> PageResult | None:
    limits = {
        "timeout_s": settings.RASTER_TIMEOUT_SECONDS,
        "memory_limit_bytes": _limits(settings),
    }
    text = read_text_layer(pdf, page, **limits)
    if text is None:
        return None
    words = read_text_layer_words(pdf, page, dpi=dpi, **limits)
    summary = _quality(words)
    outcome = PageOutcome(
        page=page,
        duration_ms=0,
        extra={
            "dpi": dpi,
            "chars": len(text),
            "source": SOURCE_TEXT_LAYER,
            "rotation": 0,
            **summary,
        },
    )
    result = PageResult(outcome, text)
    if request.needs_words:
        width, height = (
            (round(side * dpi / 72) for side in size_points)
            if size_points
            else (None, None)
        )
        result.words = {
            "page": page,
            "width": width,
            "height": height,
            "dpi": dpi,
            "rotation": 0,
            "source": SOURCE_TEXT_LAYER,
            "words": words,
        }
    if Output.HOCR in request.outputs:
        result.hocr = hocr_from_words(page, words, result.words)
    if Output.PDF in request.outputs:
        output = workdir / f"page-{page:05d}-layer.pdf"
        if extract_page(pdf, page, output, **limits):
            result.pdf = output
    return result


def _recognize(
    page: int,
    image: Path,
    size: tuple[int, int],
    dpi: int | None,
    request: PageRequest,
    settings: Settings,
    started: float,
    timings: dict[str, Any],
) -> PageResult:
    """Level the page, read it, and read it again upright if it was not.

    Orientation detection costs about as much as a third of a page's OCR, so it runs
    only when the first reading suggests a turned page: low confidence (upside
    down) or mostly tall word boxes (sideways). Upright pages, the common case, pay
    nothing for it.
    """
    width, height = size
    copies: list[Path] = []
    rotation, confidence, skew = 0, None, 0.0
    try:
        if settings.OCR_DESKEW:
            deskew_started = time.monotonic()
            measured = estimate_skew(image)
            timings["deskew_ms"] = _elapsed_ms(deskew_started)
            if abs(measured) >= MIN_CORRECTION_DEGREES:
                image = deskew(image, measured, dpi)
                copies.append(image)
                skew = measured

        ocr_started = time.monotonic()
        recognition = _read(image, dpi, request, settings)
        if request.detect_orientation and _looks_turned(recognition.words):
            osd_started = time.monotonic()
            orientation = detect_orientation(
                image,
                timeout_s=settings.PAGE_TIMEOUT_SECONDS,
                memory_limit_bytes=_limits(settings),
            )
            timings["osd_ms"] = _elapsed_ms(osd_started)
            if orientation is not None:
                confidence = orientation.confidence
            if (
                orientation is not None
                and orientation.rotate in _TRANSPOSE
                and orientation.confidence >= settings.OCR_ROTATION_MIN_CONFIDENCE
            ):
                turned, width, height = _rotate(image, orientation.rotate, dpi)
                copies.append(turned)
                if recognition.pdf is not None:
                    recognition.pdf.unlink(missing_ok=True)
                recognition = _read(turned, dpi, request, settings)
                rotation = orientation.rotate
    except PindaiError as error:
        return _failed(page, error, started, dpi)
    finally:
        # The leveled and turned copies; the original is the caller's to remove.
        for copy in copies:
            copy.unlink(missing_ok=True)

    effective_dpi = dpi or recognition.estimated_dpi
    outcome = PageOutcome(
        page=page,
        duration_ms=_elapsed_ms(started),
        extra={
            "dpi": effective_dpi,
            "chars": len(recognition.text),
            "source": SOURCE_OCR,
            "rotation": rotation,
            "rotation_confidence": confidence,
            "skew": skew,
            **_quality(recognition.words),
            **timings,
            "ocr_ms": _elapsed_ms(ocr_started),
        },
    )
    return _result_of(outcome, recognition, request, (width, height), effective_dpi)


def _read(
    image: Path, dpi: int | None, request: PageRequest, settings: Settings
) -> Recognition:
    return recognize(
        image,
        lang=request.lang,
        dpi=dpi,
        psm=request.psm,
        hocr=Output.HOCR in request.outputs,
        pdf=Output.PDF in request.outputs,
        timeout_s=settings.PAGE_TIMEOUT_SECONDS,
        memory_limit_bytes=_limits(settings),
    )


def _looks_turned(words: list[dict[str, Any]]) -> bool:
    """Tell whether a reading suggests a sideways or upside-down page.

    Upside-down text reads as confident-looking garbage of low mean confidence
    (about 35 on a letter page, against 95 upright). Tesseract reads sideways text
    itself, but its word boxes are then taller than wide.
    """
    if not words:
        return False
    if statistics.fmean(word["confidence"] for word in words) < TURNED_CONFIDENCE:
        return True
    long_words = [word for word in words if len(word["text"]) >= 3]
    tall = sum(1 for word in long_words if word["box"][3] > word["box"][2])
    return len(long_words) >= 3 and tall > len(long_words) / 2


def _result_of(
    outcome: PageOutcome,
    recognition: Recognition,
    request: PageRequest,
    size: tuple[int, int],
    dpi: int | None,
) -> PageResult:
    result = PageResult(outcome, recognition.text)
    if request.needs_words:
        result.words = {
            "page": outcome.page,
            "width": size[0],
            "height": size[1],
            "dpi": dpi,
            "rotation": outcome.extra["rotation"],
            "source": SOURCE_OCR,
            "words": recognition.words,
        }
    result.hocr = recognition.hocr
    result.pdf = recognition.pdf
    return result


def _rotate(image: Path, clockwise: int, dpi: int | None) -> tuple[Path, int, int]:
    """Write `image` turned `clockwise` degrees next to it; return path and size."""
    output = image.with_name(f"{image.stem}-upright.png")
    with Image.open(image) as original:
        turned = original.transpose(_TRANSPOSE[clockwise])
        options: dict[str, Any] = {"compress_level": 1}
        if dpi is not None:
            options["dpi"] = (dpi, dpi)
        turned.save(output, format="PNG", **options)
        return output, turned.width, turned.height


def _quality(words: list[dict[str, Any]]) -> dict[str, Any]:
    confidences = [word["confidence"] for word in words]
    return {
        "words": len(words),
        "mean_confidence": round(statistics.fmean(confidences), 2)
        if confidences
        else None,
        "min_confidence": min(confidences) if confidences else None,
    }


def _failed(
    page: int, error: PindaiError, started: float, dpi: int | None
) -> PageResult:
    outcome = PageOutcome(
        page=page,
        duration_ms=_elapsed_ms(started),
        error_code=error.code,
        error_message=error.message,
        extra={"dpi": dpi},
    )
    return PageResult(outcome, None)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
