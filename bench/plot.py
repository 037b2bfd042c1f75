"""Plot pages per second against workers from docs/benchmarks.json.

Runs in the benchmark virtualenv, which has matplotlib (`make bench` calls it):
    .bench-venv/bin/python bench/plot.py docs/benchmarks.json docs/bench_workers.png
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot(report: dict, output: Path) -> None:
    document = report["document"]
    pages = document["pages"]
    results = document["results"]
    pindai = {
        int(name.split(", ")[1].split()[0]): result
        for name, result in results.items()
        if name.startswith("pindai")
    }
    workers = sorted(pindai)
    figure, axes = plt.subplots(figsize=(6.4, 4))
    axes.plot(
        workers,
        [pages / pindai[count]["median"] for count in workers],
        marker="o",
        label="pindai",
    )
    references = [name for name in results if not name.startswith("pindai")]
    for name, color in zip(
        references, ("tab:gray", "tab:orange", "tab:green"), strict=False
    ):
        axes.axhline(
            pages / results[name]["median"], linestyle="--", color=color, label=name
        )
    axes.set_xlabel("workers")
    axes.set_xticks(workers)
    axes.set_ylim(bottom=0)
    axes.set_ylabel("pages per second (median)")
    axes.set_title(f"{pages}-page scanned PDF, {report['machine']}", fontsize=9)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(output, dpi=100)


if __name__ == "__main__":
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
