"""Classes of hostile PDFs, generated here, through the worker's poppler wrappers.

Each generator builds a small PDF by hand, with a correct cross-reference table unless
the point is to break it, so that every class is tested by construction rather than
by one sample file.
"""

from pathlib import Path

import pytest

from core.errors import PindaiError
from core.filetypes import FileType, sniff_file_type
from worker.rasterize import fit_dpi, read_pdf_info, read_pgm_size, render_page

GIB = 1024**3


def build_pdf(objects: list[str], root: int = 1) -> bytes:
    """Assemble numbered objects into a PDF with a valid xref table and trailer."""
    body = b"%PDF-1.7\n"
    offsets = []
    for number, content in enumerate(objects, start=1):
        offsets.append(len(body))
        body += f"{number} 0 obj\n{content}\nendobj\n".encode()
    xref_at = len(body)
    body += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        body += f"{offset:010d} 00000 n \n".encode()
    body += (
        f"trailer\n<< /Size {len(objects) + 1} /Root {root} 0 R >>\n"
        f"startxref\n{xref_at}\n%%EOF\n"
    ).encode()
    return body


def one_page(
    media_box: str = "0 0 612 792", count: int = 1, kids: str = "3 0 R"
) -> bytes:
    return build_pdf(
        [
            "<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{kids}] /Count {count} >>",
            f"<< /Type /Page /Parent 2 0 R /MediaBox [{media_box}] >>",
        ]
    )


def info(pdf: bytes, tmp_path: Path):
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    return path, read_pdf_info(
        path, timeout_s=30, memory_limit_bytes=2 * GIB, max_pages=20
    )


def outcomes(pdf: bytes, tmp_path: Path) -> set[str]:
    """Run a PDF the way the worker does; return the codes of what happened.

    "ok" stands for a rendered page. Any exception other than a PindaiError (a crash)
    fails the test, as does a run longer than the tool time limits allow.
    """
    try:
        path, result = info(pdf, tmp_path)
    except PindaiError as error:
        return {error.code}
    codes = set()
    for page in range(1, min(result.page_count, 20) + 1):
        size = result.page_sizes.get(page)
        try:
            dpi = fit_dpi(size, 300, 50_000_000)
            image = render_page(
                path,
                page,
                tmp_path,
                dpi=dpi,
                timeout_s=30,
                memory_limit_bytes=2 * GIB,
                size_points=size,
            )
        except PindaiError as error:
            codes.add(error.code)
            continue
        width, height = read_pgm_size(image)
        assert width * height <= 50_000_000
        assert max(width, height) <= 32767
        image.unlink()
        codes.add("ok")
    return codes


def test_valid_generated_pdf(tmp_path: Path) -> None:
    assert outcomes(one_page(), tmp_path) == {"ok"}


def test_cyclic_page_tree(tmp_path: Path) -> None:
    # The page tree lists itself as its own kid.
    pdf = one_page(kids="2 0 R 3 0 R", count=2)

    assert outcomes(pdf, tmp_path) <= {"ok", "pdf_corrupt"}


def test_page_count_lies(tmp_path: Path) -> None:
    assert outcomes(one_page(count=99_999_999), tmp_path) <= {"ok", "pdf_corrupt"}


@pytest.mark.parametrize(
    "media_box",
    ["0 0 1000000 60", "0 0 1000000 1000000", "0 0 14400 14400", "0 0 1e6 1e6"],
)
def test_huge_pages_never_render_huge(media_box: str, tmp_path: Path) -> None:
    codes = outcomes(one_page(media_box=media_box), tmp_path)

    assert codes <= {"ok", "image_too_large"}
    assert codes


def test_broken_xref(tmp_path: Path) -> None:
    pdf = one_page().replace(b"startxref\n", b"startxref\n9")

    assert outcomes(pdf, tmp_path) <= {"ok", "pdf_corrupt"}


def test_truncated_generated_pdf(tmp_path: Path) -> None:
    pdf = one_page()

    assert outcomes(pdf[: len(pdf) // 2], tmp_path) == {"pdf_corrupt"}


def test_pdf_then_png_is_a_pdf(tmp_path: Path) -> None:
    png = (Path(__file__).parent / "data" / "cases" / "ok_rgb.png").read_bytes()
    polyglot = one_page() + png

    assert sniff_file_type(polyglot[:16]) == FileType.PDF
    assert outcomes(polyglot, tmp_path) == {"ok"}


def test_png_then_pdf_is_a_png() -> None:
    png = (Path(__file__).parent / "data" / "cases" / "ok_rgb.png").read_bytes()

    assert sniff_file_type((png + one_page())[:16]) == FileType.PNG
