"""Print the README's error table from core.errors, the one definition of the codes."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.errors import ERROR_SPECS, RESPONSE


def render_error_table() -> str:
    lines = [
        "| code | returned in | HTTP status | retry can help | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for code, spec in ERROR_SPECS.items():
        surfaces = ", ".join(spec.surfaces)
        status = str(spec.http_status) if RESPONSE in spec.surfaces else "-"
        retry = "yes" if spec.retryable else "no"
        lines.append(
            f"| `{code}` | {surfaces} | {status} | {retry} | {spec.description} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_error_table())
