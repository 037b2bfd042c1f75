"""Reading the Procfile, the one definition of the web and worker start commands.

`make run`, the tests and the container images start processes with these commands, so
a change to a start command is made once, in the Procfile.
"""

from pathlib import Path

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    """Return the Procfile's commands by process type (`web`, `worker`)."""
    commands: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, separator, command = stripped.partition(":")
        if not separator or not name.strip() or not command.strip():
            raise ValueError(f"{path}:{number}: expected '<type>: <command>'")
        commands[name.strip()] = command.strip()
    return commands
