"""The container images and Railway services start exactly the Procfile's commands."""

import json
import tomllib
from pathlib import Path

import pytest

from core.procfile import read_procfile

ROOT = Path(__file__).resolve().parent.parent


def last_cmd(dockerfile: Path) -> list[str]:
    lines = [
        line for line in dockerfile.read_text().splitlines() if line.startswith("CMD ")
    ]
    return json.loads(lines[-1].removeprefix("CMD "))


@pytest.mark.parametrize(
    ("dockerfile", "process"),
    [("Dockerfile.api", "web"), ("Dockerfile.worker", "worker")],
)
def test_image_runs_procfile_command(dockerfile: str, process: str) -> None:
    command = read_procfile()[process]

    assert last_cmd(ROOT / dockerfile) == ["sh", "-c", f"exec {command}"]


@pytest.mark.parametrize(
    ("config", "process"), [("railway.toml", "web"), ("railway.worker.toml", "worker")]
)
def test_railway_runs_procfile_command(config: str, process: str) -> None:
    settings = tomllib.loads((ROOT / config).read_text())
    command = read_procfile()[process]

    assert settings["deploy"]["startCommand"] == f"sh -c 'exec {command}'"


def test_images_run_as_non_root() -> None:
    for dockerfile in ("Dockerfile.api", "Dockerfile.worker"):
        text = (ROOT / dockerfile).read_text()
        assert "\nUSER 10001:10001\n" in text, dockerfile
        assert "HEALTHCHECK" in text, dockerfile
