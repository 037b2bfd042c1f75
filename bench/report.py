"""Render docs/benchmarks.json as the Markdown tables of docs/benchmarks.md.

.venv/bin/python -m bench.report docs/benchmarks.json > docs/benchmarks.md
"""

import json
import sys
from pathlib import Path

COMMANDS = """\
Produced by `make bench`, which runs:

```sh
.venv/bin/python -m bench.run --ocrmypdf .bench-venv/bin/ocrmypdf
.venv/bin/python -m bench.upload
.venv/bin/python -m bench.load_faults
.venv/bin/python -m bench.worker_memory
.venv/bin/python -m bench.accuracy
.bench-venv/bin/python bench/plot.py docs/benchmarks.json docs/bench_workers.png
.venv/bin/python -m bench.report docs/benchmarks.json > docs/benchmarks.md
```
"""


def render(report: dict) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {report['date']} on {report['machine']}, {report['tesseract']}.",
        "Every comparison below ran side by side in one run; times are medians.",
        "",
        COMMANDS,
    ]
    lines += single_page(report["single_page"])
    lines += document(report["document"])
    lines += fairness(report["fairness"])
    lines += load(report["load"])
    if "upload" in report:
        lines += upload(report["upload"])
    if "load_with_faults" in report:
        lines += load_with_faults(report["load_with_faults"])
    if "worker_memory" in report:
        lines += worker_memory(report["worker_memory"])
    if "accuracy" in report:
        lines += accuracy(report["accuracy"])
    return "\n".join(lines) + "\n"


def single_page(data: dict) -> list[str]:
    rows = [
        "## One page: API path against the raw command",
        "",
        "`8087_054.3B.png` (2560x3300, 300 dpi), one worker, submit then long-poll.",
        "",
        "| method | runs (s) | median (s) |",
        "| --- | --- | --- |",
    ]
    for label, seconds in data["raw"].items():
        median = _median(seconds)
        rows.append(
            f"| `tesseract IMAGE -` ({label}) | {_list(seconds)} | {median:.2f} |"
        )
    api = f"{_list(data['api'])} | {data['api_median']:.2f}"
    rows.append(f"| pindai submit + `?wait=30` | {api} |")
    rows += [
        "",
        f"Ratio to the faster raw setting ({data['raw_best']}): "
        f"**{data['ratio']:.2f}x** (target: at most 1.15x).",
        "",
    ]
    if "measured" in data:
        rows += [
            f"Measured again on {data['measured']} with "
            "`.venv/bin/python -m bench.run --single-page-only`, after page leveling "
            "and orientation detection were added; the other sections are older.",
            "",
        ]
    return rows


def document(data: dict) -> list[str]:
    rows = [
        f"## A {data['pages']}-page scanned PDF",
        "",
        "`scan_12p.pdf` followed by its first 8 pages. CER is the mean character error "
        "rate over the 16 pages with ground truth (6 of them rotated 90, 180 or 270 "
        "degrees, which no method here corrects).",
        "",
        "| method | runs (s) | median (s) | pages/s | CER |",
        "| --- | --- | --- | --- | --- |",
    ]
    results = data["results"]
    raw = next(value for name, value in results.items() if name.startswith("raw"))
    for name, result in results.items():
        rate = data["pages"] / result["median"]
        rows.append(
            f"| {name} | {_list(result['seconds'])} | {result['median']:.1f} | "
            f"{rate:.2f} | {result['cer']:.3f} |"
        )
    one = results.get("pindai, 1 worker")
    two = results.get("pindai, 2 workers")
    ocrmypdf = next((v for k, v in results.items() if k.startswith("OCRmyPDF")), None)
    rows.append("")
    if one and two:
        rows.append(
            f"- 2 workers against the raw sequential pipeline: "
            f"**{two['median'] / raw['median']:.2f}x** its time (target: at most 0.6x)."
        )
        rows.append(
            f"- 1 to 2 workers: **{one['median'] / two['median']:.2f}x** faster "
            "(target: at least 1.7x)."
        )
    if two and ocrmypdf:
        rows.append(
            "- 2 workers against OCRmyPDF: "
            f"**{two['median'] / ocrmypdf['median']:.2f}x** its time (target: below 1)."
        )
    if two:
        rows.append(f"- Resolutions pindai chose per page: {two['dpi']}.")
    rows += ["", "![pages per second against workers](bench_workers.png)", ""]
    return rows


def fairness(data: dict) -> list[str]:
    return [
        "## Fairness: one page behind a 300-page document",
        "",
        "Two workers. A 300-page scanned PDF is running when a one-page PNG is "
        "submitted.",
        "",
        f"- The PNG was finished **{data['small_job_seconds']:.1f} s** after its "
        "submit "
        f"(status {data['small_job_status']}), while the large document had "
        f"{data['big_pages_done_meanwhile']} of {data['big_page_count']} pages done.",
        "",
    ]


def load(data: dict) -> list[str]:
    rows = [
        "## The API under load",
        "",
        "50 concurrent connections for 30 s with `hey`: half submit a small PNG, half "
        "poll a finished job's result. Two workers run meanwhile.",
        "",
        "| requests | count | requests/s | p50 (ms) | p99 (ms) | errors |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, result in data.items():
        rows.append(
            f"| {name} | {result['requests']} | {result['requests_per_s']:.0f} | "
            f"{result['p50_ms']:.0f} | {result['p99_ms']:.0f} | {result['errors']} |"
        )
    rows.append("")
    return rows


def upload(data: dict) -> list[str]:
    growth = _median(data["api_peak_rss_growth_mib"])
    return [
        f"## A {data['megabytes']} MB upload into S3",
        "",
        "Streamed through `POST /submit` into moto's S3 server (its own process on "
        "loopback) as a multipart upload, against boto3's `upload_file` of the same "
        "file to the same endpoint. Produced by `.venv/bin/python -m bench.upload`.",
        "",
        "| method | runs (s) | MB/s (median) |",
        "| --- | --- | --- |",
        f"| boto3 `upload_file` | {_list(data['boto3_upload_file_s'])} | "
        f"{data['boto3_mb_per_s']:.0f} |",
        f"| pindai `POST /submit` | {_list(data['api_submit_s'])} | "
        f"{data['api_mb_per_s']:.0f} |",
        "",
        f"- Throughput ratio, API to boto3: **{data['throughput_ratio']:.2f}** "
        "(target: at least 0.8).",
        f"- Peak RSS growth of the API process during the upload: **{growth:.1f} MiB** "
        f"(runs: {_list(data['api_peak_rss_growth_mib'])}; target: under 40 MB).",
        "",
    ]


def load_with_faults(data: dict) -> list[str]:
    return [
        "## Load while a worker is killed",
        "",
        f"{data['clients']} clients submitting a small PNG for {data['seconds']} s "
        "with `hey`, while one of two workers has every process killed with SIGKILL "
        f"every 10 s ({data['worker_kills']} times) and is started again. Produced by "
        "`.venv/bin/python -m bench.load_faults`.",
        "",
        "| submits | error rate | finished | failed | lost | queue drained after |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {data['submits']} | {data['submit_error_rate']:.1%} | "
        f"{data['jobs_finished']} | {data['jobs_failed']} | {data['jobs_lost']} | "
        f"{data['drained_in_s']} s |",
        "",
        f"Submit status codes: {data['submit_status_codes']}.",
        "",
    ]


def worker_memory(data: dict) -> list[str]:
    return [
        "## Worker memory",
        "",
        f"Resident memory of {data['workers']} workers, each summed over its process "
        "tree (RQ worker, work horse, pdftoppm, tesseract), sampled every 50 ms while "
        f"they OCR the {data['pages']}-page `{data['document']}`. Produced by "
        "`.venv/bin/python -m bench.worker_memory`.",
        "",
        "| idle worker (MiB) | busy peak, both workers (MiB) | busy peak per worker, "
        "median (MiB) | document time (s) | API process (MiB) |",
        "| --- | --- | --- | --- | --- |",
        f"| {_list(data['idle_worker_mib'])} | "
        f"{_list(data['busy_peak_both_workers_mib'])} | "
        f"{data['busy_peak_per_worker_mib_median']:.1f} | {_list(data['seconds'])} | "
        f"{data['api_mib']:.1f} |",
        "",
    ]


def accuracy(data: dict) -> list[str]:
    """Render the accuracy table; the README carries the same table."""
    return [
        "## Accuracy",
        "",
        "Character and word error rates (CER, WER) against ground truth, side by side "
        "in one run: the raw tools (`tesseract FILE -` for images, `pdftoppm -r 300` "
        "then `tesseract` per page for PDFs) and pindai with default options. Produced "
        "by `.venv/bin/python -m bench.accuracy`.",
        "",
        *accuracy_table(data),
        "",
    ]


def accuracy_table(data: dict) -> list[str]:
    rows = [
        "| file | pages | raw CER | pindai CER | raw WER | pindai WER | what it is |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in data["files"]:
        rows.append(
            f"| `{row['file']}` | {row['pages']} | {row['raw_cer']:.4f} | "
            f"{row['pindai_cer']:.4f} | {row['raw_wer']:.4f} | {row['pindai_wer']:.4f} "
            f"| {row['note']} |"
        )
    rows += [
        "",
        "`cardinal.pdf`, page by page (the same page turned; the reference text is an "
        "old OCR output, so pindai's reading is also compared with its own reading of "
        "the upright page 1):",
        "",
        "| page | turned | raw CER | pindai CER | pindai against page 1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in data["cardinal"]:
        rows.append(
            f"| {row['page']} | {row['degrees']} | {row['raw_cer']:.4f} | "
            f"{row['pindai_cer']:.4f} | {row['pindai_cer_against_upright']:.4f} |"
        )
    return rows


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _list(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())), end="")
