"""PDF inspection and page rendering with poppler's `pdfinfo` and `pdftoppm`.

pdf2image is not used: its convert_from_path runs `pdfinfo` with no time limit before
every render, and neither of its calls can set a memory limit on the child process.
This module runs both programs through `run_tool` with the arguments pdf2image would.
"""

import math
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import ImageTooLarge, PdfCorrupt, PdfEncrypted
from worker.process import run_tool

# Tesseract (through Leptonica) refuses images with a side of 32768 pixels or more.
MAX_SIDE_PIXELS = 32767
# Rendering below this resolution leaves body text too small to read.
MIN_RENDER_DPI = 30

_PAGE_SIZE = re.compile(r"^Page\s+(\d+)\s+size:\s+([\d.]+)\s+x\s+([\d.]+)\s+pts", re.M)
_PAGE_COUNT = re.compile(r"^Pages:\s+(\d+)\s*$", re.M)


@dataclass(frozen=True)
class PdfInfo:
    page_count: int
    # Page sizes in points (1/72 inch), keyed by 1-based page number.
    page_sizes: dict[int, tuple[float, float]]


def read_pdf_info(
    pdf: Path, *, timeout_s: float, memory_limit_bytes: int, max_pages: int
) -> PdfInfo:
    """Read the page count and the size of the first `max_pages` pages.

    Raises PdfEncrypted when the PDF needs a user password (an owner password alone
    does not stop reading) and PdfCorrupt when poppler cannot parse it.
    """
    result = run_tool(
        ["pdfinfo", "-f", "1", "-l", str(max_pages), str(pdf)],
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
    )
    if result.returncode != 0:
        errors = result.stderr.decode(errors="replace")
        if "Incorrect password" in errors:
            raise PdfEncrypted()
        if "Invalid page count 0" in errors:
            raise PdfCorrupt("The PDF has no pages.")
        raise PdfCorrupt(f"The PDF cannot be read: {result.last_error_line()}")
    text = result.stdout.decode(errors="replace")
    match = _PAGE_COUNT.search(text)
    if match is None:
        raise PdfCorrupt("The PDF cannot be read: poppler reported no page count.")
    sizes = {
        int(page): (float(width), float(height))
        for page, width, height in _PAGE_SIZE.findall(text)
    }
    return PdfInfo(page_count=int(match.group(1)), page_sizes=sizes)


def fit_dpi(size_points: tuple[float, float] | None, dpi: int, max_pixels: int) -> int:
    """Return the highest resolution up to `dpi` at which the page fits the pixel caps.

    Raises ImageTooLarge when even MIN_RENDER_DPI would exceed them.
    """
    if size_points is None:
        return dpi
    width_in, height_in = (side / 72 for side in size_points)
    if width_in <= 0 or height_in <= 0:
        return dpi
    by_area = math.sqrt(max_pixels / (width_in * height_in))
    by_side = MAX_SIDE_PIXELS / max(width_in, height_in)
    fitted = min(dpi, math.floor(min(by_area, by_side)))
    if fitted < MIN_RENDER_DPI:
        raise ImageTooLarge(
            f"The page measures {width_in:.0f} x {height_in:.0f} inches; even at "
            f"{MIN_RENDER_DPI} dpi it is larger than the pixel limit."
        )
    return fitted


def render_page(
    pdf: Path,
    page: int,
    destination_dir: Path,
    *,
    dpi: int,
    timeout_s: float,
    memory_limit_bytes: int,
) -> Path:
    """Render one page to an 8-bit grayscale PGM file and return its path.

    Raises ToolTimeout when pdftoppm runs too long, PdfCorrupt when it fails, and
    ImageTooLarge when it exits 0 but produced a degenerate image, as pdftoppm does
    when it cannot allocate the page.
    """
    prefix = destination_dir / f"page-{page:05d}"
    result = run_tool(
        [
            "pdftoppm",
            "-f", str(page),
            "-l", str(page),
            "-r", str(dpi),
            "-gray",
            "-singlefile",
            str(pdf),
            str(prefix),
        ],
        timeout_s=timeout_s,
        memory_limit_bytes=memory_limit_bytes,
    )  # fmt: skip
    output = prefix.with_suffix(".pgm")
    if result.returncode != 0:
        output.unlink(missing_ok=True)
        raise PdfCorrupt(f"Page {page} cannot be rendered: {result.last_error_line()}")
    if not output.is_file():
        raise PdfCorrupt(f"Page {page} cannot be rendered: pdftoppm wrote no image.")
    width, height = read_pgm_size(output)
    if width <= 1 or height <= 1:
        output.unlink(missing_ok=True)
        raise ImageTooLarge(
            f"Page {page} could not be rendered at {dpi} dpi: the renderer produced "
            f"a {width}x{height} image."
        )
    return output


def read_pgm_size(path: Path) -> tuple[int, int]:
    """Read width and height from a binary PGM header (`P5 <w> <h> <max>`)."""
    with path.open("rb") as file:
        header = file.read(64)
    tokens = re.sub(rb"#[^\n]*\n", b" ", header).split()
    if len(tokens) < 3 or tokens[0] != b"P5":
        return (0, 0)
    return (int(tokens[1]), int(tokens[2]))
