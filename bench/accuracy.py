"""Accuracy benchmark: pindai against the raw tools on every corpus file with truth.

Character and word error rates (CER, WER) against ground truth, side by side in one
run. The raw tools run at their best plain setting: `tesseract FILE -` for images,
and `pdftoppm -r 300` then `tesseract PAGE -` for each PDF page. pindai runs as the
API and two workers with default options. Merges its figures into
docs/benchmarks.json.

    .venv/bin/python -m bench.accuracy

The `linn` reference is itself an old OCR output ("silver" truth), so the pages made
from it (linn.png, cardinal.pdf, rotated_skew.pdf, scan_12p.pdf pages 3-8) are also
compared with pindai's reading of the upright page.
"""

import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.measure import CORPUS, GROUND_TRUTH, SCAN_12P_TRUTH, merge_into_report, run
from tests.support.servers import redis_server
from tests.support.stack import Stack, running_stack
from tests.support.text import character_error_rate, word_error_rate

RAW_ENV = {"OMP_THREAD_LIMIT": "1"}
LINN = "linn.ref.txt"


@dataclass
class Case:
    """A corpus file and, per page, the ground truth it is compared with."""

    file: str
    truth: dict[int, str]
    # Pages submitted to pindai, when not every page (`pages` option).
    pages: str | None = None
    note: str = ""
    # Truth read from the PDF's own text layer instead of a file in gt/.
    truth_from_text_layer: bool = False
    # A file generated from a corpus file for this run, read instead of CORPUS / file.
    generated: Path | None = None
    texts: dict[str, dict[int, str]] = field(default_factory=dict)


CASES = [
    Case("phototest.tif", {1: "phototest.gt.txt"}, note="1-bit TIFF, 200 dpi"),
    Case(
        "phototest-rotated-R.png",
        {1: "phototest-rotated-R.gt.txt"},
        note="the page turned 90 degrees",
    ),
    Case("8087_054.3B.png", {1: "8087_054.3B.gt.txt"}, note="magazine page, 300 dpi"),
    Case("pytesseract_test.jpg", {1: "pytesseract_test.gt.txt"}, note="gray JPEG"),
    Case("linn.png", {1: LINN}, note="dense brochure page; silver truth"),
    Case(
        "lowres_72dpi_page.pdf",
        {1: "lowres_72dpi_page.gt.txt"},
        note="72-dpi scan",
    ),
    Case(
        "lowres_72dpi_page.png",
        {1: "lowres_72dpi_page.gt.txt"},
        note="the same 72-dpi scan as an image, taken out with pdfimages",
    ),
    Case(
        "cardinal.pdf",
        {1: LINN, 2: LINN, 3: LINN, 4: LINN},
        note="the linn page at 0, 90, 180 and 270 degrees; silver truth",
    ),
    Case("rotated_skew.pdf", {1: LINN}, note="/Rotate 90 and a skewed scan"),
    Case("francais.pdf", {1: "francais.gt.txt"}, note="French; read with eng"),
    Case(
        "pdf2image_test_241.pdf",
        {page: "" for page in range(5, 10)},
        pages="5-9",
        note="born-digital; truth is its text layer",
        truth_from_text_layer=True,
    ),
    Case("scan_12p.pdf", dict(SCAN_12P_TRUTH), note="12 mixed scans"),
]


def truth_of(case: Case, page: int) -> str:
    if case.truth_from_text_layer:
        return run(
            [
                "pdftotext",
                "-f",
                str(page),
                "-l",
                str(page),
                str(CORPUS / case.file),
                "-",
            ]
        )
    return (GROUND_TRUTH / case.truth[page]).read_text()


def source_of(case: Case) -> Path:
    return case.generated or CORPUS / case.file


def make_lowres_image(case: Case, workdir: Path) -> None:
    """Take the scanned image out of the 72-dpi PDF page, pixels unchanged."""
    prefix = workdir / "lowres"
    run(["pdfimages", "-png", str(CORPUS / "lowres_72dpi_page.pdf"), str(prefix)])
    case.generated = workdir / case.file
    (workdir / "lowres-000.png").rename(case.generated)


def raw_texts(case: Case, workdir: Path) -> dict[int, str]:
    source = source_of(case)
    if source.suffix != ".pdf":
        return {1: run(["tesseract", str(source), "-"], RAW_ENV)}
    texts = {}
    for page in case.truth:
        prefix = workdir / f"{source.stem}-{page}"
        run(
            [
                "pdftoppm",
                "-r",
                "300",
                "-png",
                "-singlefile",
                "-f",
                str(page),
                "-l",
                str(page),
                str(source),
                str(prefix),
            ]
        )
        texts[page] = run(["tesseract", f"{prefix}.png", "-"], RAW_ENV)
    return texts


def pindai_texts(stack: Stack, case: Case) -> dict[int, str]:
    source = source_of(case)
    response = httpx.post(
        f"{stack.base_url}/api/v1/ocr/submit",
        files={"file": (source.name, source.read_bytes())},
        data={"pages": case.pages} if case.pages else {},
        timeout=120,
    )
    response.raise_for_status()
    body = stack.wait_for(response.json()["job_id"], timeout_s=900)
    if body["status"] != "finished":
        raise RuntimeError(
            f"{case.file}: the job ended {body['status']}: {body['error']}"
        )
    return {page["page"]: page["text"] or "" for page in body["pages"]}


def rates(texts: dict[int, str], case: Case) -> tuple[float, float]:
    cer = [
        character_error_rate(texts.get(page, ""), truth_of(case, page))
        for page in case.truth
    ]
    wer = [
        word_error_rate(texts.get(page, ""), truth_of(case, page))
        for page in case.truth
    ]
    return statistics.mean(cer), statistics.mean(wer)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pindai-accuracy-bench-"))
    rows = []
    with (
        redis_server(workdir / "redis") as redis_url,
        running_stack(redis_url, workdir / "stack", 0, LOG_LEVEL="WARNING") as stack,
    ):
        for case in CASES:
            if case.file == "lowres_72dpi_page.png":
                make_lowres_image(case, workdir)
            case.texts["raw"] = raw_texts(case, workdir)
            case.texts["pindai"] = pindai_texts(stack, case)
            raw_cer, raw_wer = rates(case.texts["raw"], case)
            cer, wer = rates(case.texts["pindai"], case)
            rows.append(
                {
                    "file": case.file,
                    "note": case.note,
                    "pages": len(case.truth),
                    "raw_cer": round(raw_cer, 4),
                    "pindai_cer": round(cer, 4),
                    "raw_wer": round(raw_wer, 4),
                    "pindai_wer": round(wer, 4),
                }
            )
            print(rows[-1], flush=True)

    cardinal = next(case for case in CASES if case.file == "cardinal.pdf")
    upright = cardinal.texts["pindai"][1]
    rotation = [
        {
            "page": page,
            "degrees": (page - 1) * 90,
            "raw_cer": round(
                character_error_rate(
                    cardinal.texts["raw"][page], (GROUND_TRUTH / LINN).read_text()
                ),
                4,
            ),
            "pindai_cer": round(
                character_error_rate(
                    cardinal.texts["pindai"][page], (GROUND_TRUTH / LINN).read_text()
                ),
                4,
            ),
            "pindai_cer_against_upright": round(
                character_error_rate(cardinal.texts["pindai"][page], upright), 4
            ),
        }
        for page in sorted(cardinal.truth)
    ]
    merge_into_report("accuracy", {"files": rows, "cardinal": rotation})


if __name__ == "__main__":
    main()
