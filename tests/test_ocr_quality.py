"""Richer reading through the real workers: orientation, text layers, page
selection, TIFF pages, upscaling, and the words, hOCR and searchable PDF outputs.
"""

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.conftest import CASES, DATA
from tests.support.stack import Stack
from tests.support.text import character_error_rate, normalize

pytestmark = pytest.mark.integration

GROUND_TRUTH = DATA / "gt"
# Pixel slack between a drawn word's ink box and Tesseract's box of it: glyph side
# bearings make the drawn box a few pixels wider.
BOX_SLACK = 8


def submit(stack: Stack, path: Path, **fields: str) -> dict:
    job_id = stack.submit_ok(path, options=fields)
    return stack.wait_for(job_id, timeout_s=180)


def output(stack: Stack, job_id: str, name: str) -> httpx.Response:
    response = httpx.get(f"{stack.base_url}/api/v1/ocr/result/{job_id}/{name}")
    assert response.status_code == 200, response.text
    return response


def test_rotated_image_read_upright(local_stack: Stack) -> None:
    body = submit(local_stack, DATA / "phototest-rotated-R.png")

    [page] = body["pages"]
    assert page["quality"]["rotation"] == 270
    assert page["quality"]["rotation_confidence"] > 2
    truth = (GROUND_TRUTH / "phototest.gt.txt").read_text()
    assert character_error_rate(page["text"], truth) < 0.02


def test_upside_down_page_read_upright(local_stack: Stack) -> None:
    body = submit(local_stack, DATA / "cardinal.pdf", pages="1,3")

    upright, upside_down = body["pages"]
    assert upright["page"] == 1
    assert upright["quality"]["rotation"] == 0
    assert upside_down["page"] == 3
    assert upside_down["quality"]["rotation"] == 180
    assert character_error_rate(upside_down["text"], upright["text"]) < 0.02
    truth = (GROUND_TRUTH / "linn.ref.txt").read_text()
    upright_error = character_error_rate(upright["text"], truth)
    assert character_error_rate(upside_down["text"], truth) < upright_error + 0.005


def draw_words(path: Path) -> dict[str, tuple[int, int, int, int]]:
    """Draw two words on a white page; return each word's ink box."""
    font = ImageFont.load_default(size=64)
    image = Image.new("L", (1200, 700), 255)
    draw = ImageDraw.Draw(image)
    boxes = {}
    for word, origin in (("PINDAI", (300, 300)), ("LOCATED", (650, 450))):
        draw.text(origin, word, font=font, fill=0)
        boxes[word] = draw.textbbox(origin, word, font=font)
    image.save(path, dpi=(300, 300))
    return boxes


def test_word_boxes_match_drawing(local_stack: Stack, tmp_path: Path) -> None:
    drawn = draw_words(tmp_path / "words.png")

    body = submit(local_stack, tmp_path / "words.png", outputs="words")
    document = output(local_stack, body["job_id"], "words").json()

    [page] = document["pages"]
    assert page["width"] == 1200
    assert page["height"] == 700
    assert page["source"] == "ocr"
    found = {word["text"]: word for word in page["words"]}
    for text, (left, top, right, bottom) in drawn.items():
        word = found[text]
        word_left, word_top, width, height = word["box"]
        assert abs(word_left - left) <= BOX_SLACK, text
        assert abs(word_top - top) <= BOX_SLACK, text
        assert abs(word_left + width - right) <= BOX_SLACK, text
        assert abs(word_top + height - bottom) <= BOX_SLACK, text
        assert 0 < word["confidence"] <= 100
    assert found["PINDAI"]["line"] == 1
    assert body["pages"][0]["quality"]["words"] == 2


def joined_words(text: str) -> str:
    # pdftotext joins words hyphenated at a line end; join them in both texts.
    joined = re.sub(r"(\w)-\s*\n\s*(\w)", r"\1\2", text)
    return " ".join(joined.split())


def test_searchable_pdf_text_matches(local_stack: Stack, tmp_path: Path) -> None:
    body = submit(local_stack, DATA / "scan_3p.pdf", pages="1,3", outputs="pdf,hocr")
    assert [page["state"] for page in body["pages"]] == ["done", "done"]
    pdf = tmp_path / "searchable.pdf"
    pdf.write_bytes(output(local_stack, body["job_id"], "pdf").content)

    pages = subprocess.run(
        ["pdfinfo", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"^Pages:\s+2$", pages, re.MULTILINE)
    for index, page in enumerate(body["pages"], start=1):
        number = str(index)
        layer = subprocess.run(
            # -raw keeps the text layer's own order, which is Tesseract's reading
            # order; pdftotext's layout analysis would reorder the columns.
            ["pdftotext", "-raw", "-f", number, "-l", number, str(pdf), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        difference = character_error_rate(
            joined_words(layer), joined_words(page["text"])
        )
        assert difference < 0.02, number
    hocr = output(local_stack, body["job_id"], "hocr")
    assert hocr.headers["content-type"].startswith("text/html")
    assert hocr.text.count("class='ocr_page'") == 2
    assert "id='page_1'" in hocr.text
    assert "id='page_3'" in hocr.text
    assert "ocrx_word" in hocr.text


def test_text_layer_used_in_auto(local_stack: Stack, tmp_path: Path) -> None:
    pdf = DATA / "jungle_book_p5.pdf"
    layer = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout

    auto = submit(local_stack, pdf, outputs="words,pdf")
    forced = submit(local_stack, pdf, mode="force")

    [auto_page] = auto["pages"]
    [forced_page] = forced["pages"]
    assert auto_page["quality"]["source"] == "text_layer"
    assert normalize(auto_page["text"]) == normalize(layer)
    assert forced_page["quality"]["source"] == "ocr"
    assert character_error_rate(forced_page["text"], layer) < 0.05
    searchable = tmp_path / "searchable.pdf"
    searchable.write_bytes(output(local_stack, auto["job_id"], "pdf").content)
    layer_after = subprocess.run(
        ["pdftotext", str(searchable), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert normalize(layer_after) == normalize(layer)
    words = output(local_stack, auto["job_id"], "words").json()["pages"][0]
    assert words["source"] == "text_layer"
    assert [word["text"] for word in words["words"]][:3] == ["The", "Jungle", "Book"]


def test_page_selection_reads_only_those(local_stack: Stack) -> None:
    body = submit(local_stack, DATA / "scan_3p.pdf", pages="3")

    assert body["page_count"] == 1
    assert [page["page"] for page in body["pages"]] == [3]
    truth = (GROUND_TRUTH / "phototest.gt.txt").read_text()
    assert character_error_rate(body["text"], truth) < 0.02
    base = f"{local_stack.base_url}/api/v1/ocr/result/{body['job_id']}/pages"
    assert httpx.get(f"{base}/3").status_code == 200
    assert httpx.get(f"{base}/1").json()["error"]["code"] == "page_not_found"


def test_page_past_end_fails_job(local_stack: Stack) -> None:
    body = submit(local_stack, DATA / "scan_3p.pdf", pages="2,9")

    assert body["status"] == "failed"
    assert body["error"]["code"] == "pages_out_of_range"


def test_multipage_tiff_fans_out(local_stack: Stack, tmp_path: Path) -> None:
    frames = [
        Image.open(CASES / name).convert("L").point(lambda value: 255 * (value > 128))
        for name in ("ok_rgb.png", "ok_rgb.jpg")
    ]
    fax = tmp_path / "fax.tif"
    bilevel = [frame.convert("1") for frame in frames]
    bilevel[0].save(
        fax,
        save_all=True,
        append_images=bilevel[1:],
        compression="group4",
        dpi=(200, 200),
    )

    body = submit(local_stack, fax)

    assert body["status"] == "finished", body
    assert body["file_type"] == "tiff"
    assert [page["page"] for page in body["pages"]] == [1, 2]
    assert "INVOICE NUMBER 4721" in body["pages"][0]["text"]
    assert "RECEIPT TOTAL 98" in body["pages"][1]["text"]


def test_low_resolution_image_upscaled(local_stack: Stack, tmp_path: Path) -> None:
    source = Image.open(DATA / "pytesseract_test.jpg")
    scale = 100 / 200
    small = source.resize((round(source.width * scale), round(source.height * scale)))
    small.save(tmp_path / "low.png", dpi=(100, 100))

    body = submit(local_stack, tmp_path / "low.png")

    [page] = body["pages"]
    assert page["dpi"] == 300
    truth = (GROUND_TRUTH / "phototest.gt.txt").read_text()
    assert character_error_rate(page["text"], truth) < 0.1


def test_dpi_and_psm_options_applied(local_stack: Stack) -> None:
    body = submit(local_stack, DATA / "scan_3p.pdf", pages="3", dpi="200", psm="6")

    [page] = body["pages"]
    assert page["dpi"] == 200
    assert body["options"]["psm"] == 6
    assert page["state"] == "done"


def test_two_languages_read(local_stack: Stack) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = httpx.get(f"{local_stack.base_url}/api/v1/ocr/languages").json()
        if "ind" in listed["languages"]:
            break
        time.sleep(0.5)

    body = submit(local_stack, CASES / "ok_rgb.png", lang="eng+ind")

    assert body["status"] == "finished"
    assert body["text"] == "INVOICE NUMBER 4721"
    assert body["options"]["lang"] == "eng+ind"


def test_words_json_is_valid(local_stack: Stack) -> None:
    body = submit(local_stack, CASES / "ok_rgb.png", outputs="words")

    raw = output(local_stack, body["job_id"], "words").content

    document = json.loads(raw)
    assert [word["text"] for word in document["pages"][0]["words"]] == [
        "INVOICE",
        "NUMBER",
        "4721",
    ]
