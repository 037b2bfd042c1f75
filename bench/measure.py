"""Timing and accuracy helpers shared by the benchmark scenarios."""

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.text import character_error_rate

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.json"
GROUND_TRUTH = CORPUS / "gt"

# Ground truth of the pages of scan_12p.pdf that have one (see the corpus's SOURCES.md).
# Pages 3-8 are one brochure page at four rotations. Its reference is an older OCR
# output, so it serves only to compare methods with each other.
SCAN_12P_TRUTH = {
    3: "linn.ref.txt",
    4: "linn.ref.txt",
    5: "linn.ref.txt",
    6: "linn.ref.txt",
    7: "linn.ref.txt",
    8: "linn.ref.txt",
    9: "lowres_72dpi_page.gt.txt",
    10: "lowres_72dpi_page.gt.txt",
    11: "8087_054.3B.gt.txt",
    12: "phototest.gt.txt",
}


@dataclass
class Timing:
    """Wall-clock times of repeated runs of one method."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_runs(name: str, runs: int, action: Callable[[], object]) -> Timing:
    timing = Timing(name)
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timing.seconds.append(time.perf_counter() - started)
    return timing


def run(args: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, check=True, capture_output=True, env={**os.environ, **(env or {})}
    )
    return result.stdout.decode("utf-8", errors="replace")


def mean_cer(page_texts: dict[int, str], truth: dict[int, str]) -> float:
    """Mean character error rate over the pages that have ground truth."""
    rates = [
        character_error_rate(
            page_texts.get(page, ""), (GROUND_TRUTH / name).read_text()
        )
        for page, name in truth.items()
    ]
    return statistics.mean(rates)


def write_submit_body(path: Path, image: Path, boundary: str) -> None:
    """Write a multipart body submitting `image`, for load tools that send a file."""
    path.write_bytes(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{image.name}"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + image.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )


def merge_into_report(section: str, figures: dict) -> None:
    """Store `figures` as `section` of docs/benchmarks.json, keeping the others."""
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    report[section] = figures
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
