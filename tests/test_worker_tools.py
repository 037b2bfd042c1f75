"""The worker's wrappers around Pillow, poppler and Tesseract, on real files."""

import signal
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from core.errors import (
    ImageCorrupt,
    ImageTooLarge,
    OcrFailed,
    OcrTimeout,
    PdfCorrupt,
    PdfEncrypted,
)
from core.filetypes import FileType, sniff_file_type
from tests.conftest import CASES, DATA
from tests.support.stack import tool_processes
from worker.deskew import estimate_skew
from worker.images import prepare_image
from worker.process import ToolTimeout, run_tool
from worker.rasterize import (
    MAX_SIDE_PIXELS,
    fit_dpi,
    read_pdf_info,
    read_pgm_size,
    render_page,
)
from worker.tesseract import clean_text, detect_orientation, recognize_text
from worker.text_layer import read_text_layer, read_text_layer_words

GIB = 1024**3


def ocr(image: Path, timeout_s: float = 30) -> str:
    return recognize_text(
        image, lang="eng", dpi=None, timeout_s=timeout_s, memory_limit_bytes=2 * GIB
    )


@pytest.mark.parametrize(
    ("case", "expected", "converted"),
    [
        ("ok_rgb.png", "INVOICE NUMBER 4721", False),
        ("ok_rgb.jpg", "RECEIPT TOTAL 98", False),
        ("jpg_cmyk.jpg", "CMYK BLACK TEXT", True),
        ("png_16bit_gray.png", "SIXTEEN BIT GRAY", True),
        ("jpg_exif_rotate6.jpg", "ROTATED BY EXIF", True),
    ],
)
def test_image_read(case: str, expected: str, converted: bool, tmp_path: Path) -> None:
    prepared = prepare_image(CASES / case, tmp_path, max_pixels=50_000_000)

    assert (prepared.path != CASES / case) == converted
    assert expected in ocr(prepared.path)


@pytest.mark.parametrize("case", ["png_tiny_2x2.png", "png_blank_a4.png"])
def test_image_without_text(case: str, tmp_path: Path) -> None:
    prepared = prepare_image(CASES / case, tmp_path, max_pixels=50_000_000)

    assert ocr(prepared.path) == ""


def test_alpha_flattened_on_white(tmp_path: Path) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (600, 120), (0, 0, 0, 0))
    ImageDraw.Draw(image).text(
        (20, 40), "ALPHA TEXT", fill=(0, 0, 0, 255), font_size=40
    )
    source = tmp_path / "alpha.png"
    image.save(source)

    prepared = prepare_image(source, tmp_path, max_pixels=50_000_000)

    with Image.open(prepared.path) as result:
        assert result.mode == "RGB"
        assert result.getpixel((1, 1)) == (255, 255, 255)
    assert "ALPHA TEXT" in ocr(prepared.path)


def test_bomb_rejected_from_header(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ImageTooLarge):
        prepare_image(
            CASES / "png_bomb_30000x30000.png", tmp_path, max_pixels=50_000_000
        )

    assert time.monotonic() - started < 2


def test_pixel_cap_setting(tmp_path: Path) -> None:
    with pytest.raises(ImageTooLarge, match="more than 1,000 pixels"):
        prepare_image(CASES / "ok_rgb.png", tmp_path, max_pixels=1000)


@pytest.mark.parametrize("case", ["jpg_truncated.jpg", "png_truncated.png"])
def test_truncated_image(case: str, tmp_path: Path) -> None:
    with pytest.raises(ImageCorrupt):
        prepare_image(CASES / case, tmp_path, max_pixels=50_000_000)


def test_undecodable_image(tmp_path: Path) -> None:
    source = tmp_path / "junk.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)

    with pytest.raises(ImageCorrupt):
        prepare_image(source, tmp_path, max_pixels=50_000_000)


def pdf_info(path: Path, max_pages: int = 20):
    return read_pdf_info(
        path, timeout_s=30, memory_limit_bytes=2 * GIB, max_pages=max_pages
    )


def test_pdf_info_pages_and_sizes() -> None:
    info = pdf_info(CASES / "ok_scanned_3pages.pdf")

    assert info.page_count == 3
    assert set(info.page_sizes) == {1, 2, 3}
    assert info.page_sizes[1] == (612.0, 792.0)


def test_pdf_owner_password_opens() -> None:
    assert pdf_info(CASES / "pdf_encrypted_owner_only.pdf").page_count == 1


def test_pdf_user_password() -> None:
    with pytest.raises(PdfEncrypted):
        pdf_info(CASES / "pdf_encrypted_user_password.pdf")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("pdf_truncated_half.pdf", "cannot be read"),
        ("pdf_header_then_garbage.pdf", "cannot be read"),
        ("pdf_zero_pages.pdf", "no pages"),
    ],
)
def test_pdf_unreadable(case: str, message: str) -> None:
    with pytest.raises(PdfCorrupt, match=message):
        pdf_info(CASES / case)


def test_fit_dpi_keeps_normal_pages() -> None:
    assert fit_dpi((612.0, 792.0), 300, 50_000_000) == 300


def test_fit_dpi_scales_huge_pages() -> None:
    # 200 x 200 inches: 40000 x 40000 pixels at 200 dpi.
    dpi = fit_dpi((14400.0, 14400.0), 300, 50_000_000)

    assert dpi == 35
    assert (200 * dpi) ** 2 <= 50_000_000


def test_fit_dpi_caps_long_side() -> None:
    # A 1 x 200 inch strip: few pixels, but one side too long for Tesseract.
    dpi = fit_dpi((72.0, 14400.0), 300, 50_000_000)

    assert 200 * dpi <= MAX_SIDE_PIXELS


def test_fit_dpi_refuses_absurd_pages() -> None:
    with pytest.raises(ImageTooLarge):
        fit_dpi((14400.0 * 50, 14400.0 * 50), 300, 50_000_000)


def test_render_page(tmp_path: Path) -> None:
    image = render_page(
        CASES / "ok_scanned_3pages.pdf",
        2,
        tmp_path,
        dpi=100,
        timeout_s=30,
        memory_limit_bytes=2 * GIB,
    )

    assert read_pgm_size(image) == (850, 1100)
    assert "BRAVO SECTION" in ocr(image)


def test_render_huge_page_scaled(tmp_path: Path) -> None:
    pdf = CASES / "pdf_huge_page_200in.pdf"
    info = pdf_info(pdf)
    dpi = fit_dpi(info.page_sizes[1], 300, 50_000_000)

    image = render_page(
        pdf, 1, tmp_path, dpi=dpi, timeout_s=60, memory_limit_bytes=2 * GIB
    )

    width, height = read_pgm_size(image)
    assert width * height <= 50_000_000
    assert width > 1000


def test_render_failure_is_pdf_corrupt(tmp_path: Path) -> None:
    with pytest.raises(PdfCorrupt):
        render_page(
            CASES / "pdf_truncated_half.pdf",
            1,
            tmp_path,
            dpi=100,
            timeout_s=30,
            memory_limit_bytes=2 * GIB,
        )
    assert list(tmp_path.iterdir()) == []


def test_tesseract_timeout_kills(tmp_path: Path) -> None:
    image = tmp_path / "dense.png"
    image.write_bytes((CASES / "png_dense_text_timeout.png").read_bytes())
    started = time.monotonic()
    with pytest.raises(OcrTimeout, match="within 1 s"):
        ocr(image, timeout_s=1)

    assert time.monotonic() - started < 5
    assert tool_processes() == []
    # The killed run's partial output files are removed too.
    assert list(tmp_path.iterdir()) == [image]


def test_tesseract_error_is_ocr_failed(tmp_path: Path) -> None:
    not_an_image = tmp_path / "page.png"
    not_an_image.write_bytes(b"plain text, not pixels")

    with pytest.raises(OcrFailed):
        ocr(not_an_image)
    assert not (tmp_path / "page-ocr.txt").exists()


def test_clean_text_strips_form_feed() -> None:
    assert clean_text("line one  \nline two\n\n\f") == "line one\nline two"


def test_run_tool_timeout() -> None:
    with pytest.raises(ToolTimeout, match=r"timed out after 0\.5 s"):
        run_tool(["sleep", "30"], timeout_s=0.5)


def test_run_tool_memory_limit() -> None:
    script = "bytearray(512 * 1024 * 1024)"
    result = run_tool(
        [sys.executable, "-c", script], timeout_s=30, memory_limit_bytes=256 * 1024**2
    )

    assert result.returncode != 0
    assert "MemoryError" in result.last_error_line()


def test_run_tool_interrupted_kills_child() -> None:
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_tool(["sleep", "31.7"], timeout_s=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert command_lines_containing("sleep\x0031.7") == []


def command_lines_containing(fragment: str) -> list[str]:
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command_line = path.read_text(errors="replace")
        except OSError:
            continue
        if fragment in command_line:
            found.append(command_line)
    return found


def lined_page(path: Path, angle: float) -> None:
    """Write a page of text lines turned `angle` degrees counter-clockwise."""
    font = ImageFont.load_default(size=28)
    page = Image.new("L", (1700, 2200), 255)
    draw = ImageDraw.Draw(page)
    for line in range(30):
        draw.text(
            (150, 150 + line * 60),
            "The quick brown fox jumps over " * 2,
            font=font,
            fill=0,
        )
    page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255).save(path)


@pytest.mark.parametrize("angle", [-3.0, -1.2, 0.0, 2.5])
def test_skew_estimated(tmp_path: Path, angle: float) -> None:
    lined_page(tmp_path / "page.png", angle)

    measured = estimate_skew(tmp_path / "page.png")

    assert abs(measured + angle) <= 0.3


def test_orientation_detected(tmp_path: Path) -> None:
    image = tmp_path / "turned.png"
    image.write_bytes((DATA / "phototest-rotated-R.png").read_bytes())

    orientation = detect_orientation(image, timeout_s=30, memory_limit_bytes=2 * GIB)

    assert orientation is not None
    assert orientation.rotate == 270
    assert orientation.confidence > 2


def test_orientation_unknown_on_blank(tmp_path: Path) -> None:
    image = tmp_path / "blank.png"
    Image.new("L", (800, 600), 255).save(image)

    assert detect_orientation(image, timeout_s=30, memory_limit_bytes=2 * GIB) is None


def test_text_layer_read(tmp_path: Path) -> None:
    pdf = DATA / "jungle_book_p5.pdf"

    text = read_text_layer(pdf, 1, timeout_s=30, memory_limit_bytes=2 * GIB)
    words = read_text_layer_words(
        pdf, 1, dpi=144, timeout_s=30, memory_limit_bytes=2 * GIB
    )

    assert text is not None
    assert text.startswith("The Jungle Book")
    assert [word["text"] for word in words[:3]] == ["The", "Jungle", "Book"]
    # At 144 dpi a point is two pixels: the title sits in the page's top inch.
    assert 0 < words[0]["box"][1] < 144


def test_scanned_page_has_no_text_layer() -> None:
    layer = read_text_layer(
        DATA / "scan_3p.pdf", 3, timeout_s=30, memory_limit_bytes=2 * GIB
    )

    assert layer is None


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"II*\x00\x08\x00\x00\x00", FileType.TIFF),
        (b"MM\x00*\x00\x00\x00\x08", FileType.TIFF),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", FileType.WEBP),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
    ],
)
def test_new_signatures(head: bytes, expected: FileType | None) -> None:
    assert sniff_file_type(head) == expected
