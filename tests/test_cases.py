"""The hostile and tricky inputs of tests/data/cases, each against its expected outcome.

cases.json gives, per input, the outcome a careful OCR API should have: rejected at
submit, failed with a code, or finished with some text, plus other acceptable outcomes.
Its error codes are suggestions; CODE_NAMES maps them to pindai's closed set.
"""

import json

import pytest

from tests.conftest import CASES
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

CODE_NAMES = {
    "corrupt_pdf": "pdf_corrupt",
    "no_pages": "pdf_corrupt",
    "page_too_large": "image_too_large",
    "corrupt_image": "image_corrupt",
    "missing_file": "invalid_request",
}
# Scenarios that are not a single upload: worker kills, TTL expiry, concurrency and
# clean-up are covered by their own tests.
NOT_SINGLE_UPLOADS = {
    "C52_worker_killed_midjob",
    "C53_result_after_ttl",
    "C54_successful_job_marked_abandoned",
    "C55_concurrent_oversubscription",
    "C56_cleanup_after_failures",
}
ALL_CASES = json.loads((CASES / "cases.json").read_text())
UPLOAD_CASES = [
    case
    for case in ALL_CASES
    if case["file"] is not None and case["id"] not in NOT_SINGLE_UPLOADS
]


def outcome_of(stack: Stack, case: dict) -> dict:
    """Submit a case's file as its upload describes and return what happened."""
    upload = case["upload"]
    path = CASES / case["file"].removeprefix("inputs/")
    files = {"file": (upload["filename"], path.read_bytes(), upload["content_type"])}
    response = stack.post_files(files)
    if response.status_code != 202:
        return {
            "http_status_on_submit": response.status_code,
            "final_status": "rejected",
            "code": response.json()["error"]["code"],
        }
    body = stack.wait_for(response.json()["job_id"], timeout_s=120)
    return {
        "http_status_on_submit": 202,
        "final_status": body["status"],
        "code": (body["error"] or {}).get("code"),
        "body": body,
    }


def matches(outcome: dict, expected: dict) -> bool:
    status = expected.get("http_status_on_submit")
    if status is not None and outcome["http_status_on_submit"] != status:
        return False
    if outcome["final_status"] != expected["final_status"]:
        return False
    hint = expected.get("error_code_hint")
    if hint is not None and outcome["code"] != CODE_NAMES.get(hint, hint):
        return False
    body = outcome.get("body")
    if body is None or body["status"] != "finished":
        return True
    text = body["text"] or ""
    for fragment in expected.get("text_contains") or []:
        if fragment not in text:
            return False
    for fragment in expected.get("text_not_contains") or []:
        if fragment in text:
            return False
    if "text_equals" in expected and text != expected["text_equals"]:
        return False
    return "pages" not in expected or body["page_count"] == expected["pages"]


@pytest.mark.parametrize(
    "case", UPLOAD_CASES, ids=[case["id"] for case in UPLOAD_CASES]
)
def test_case_outcome(local_stack: Stack, case: dict) -> None:
    outcome = outcome_of(local_stack, case)

    expected = case["expected"]
    acceptable = [expected, *expected.get("also_acceptable", [])]
    summary = {key: value for key, value in outcome.items() if key != "body"}
    assert any(matches(outcome, option) for option in acceptable), summary
    if "page_order" in expected and outcome["final_status"] == "finished":
        texts = [page["text"] for page in outcome["body"]["pages"]]
        for text, marker in zip(texts, expected["page_order"], strict=True):
            assert marker in text
