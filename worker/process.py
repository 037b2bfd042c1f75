"""Running external programs under time and memory limits, leaving no process."""

import ctypes
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1


class ToolTimeout(Exception):
    """The program ran past its time limit and was killed."""

    def __init__(self, program: str, timeout_s: float) -> None:
        super().__init__(f"{program} timed out after {timeout_s:g} s")
        self.program = program
        self.timeout_s = timeout_s


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    elapsed_s: float

    def last_error_line(self) -> str:
        """Return the last non-empty line of stderr, for error messages."""
        lines = [
            line.strip() for line in self.stderr.decode(errors="replace").splitlines()
        ]
        lines = [line for line in lines if line]
        return lines[-1][:300] if lines else f"exit status {self.returncode}"


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


# Loaded once here: the child set-up runs between fork and exec, where loading a
# library could block on a lock held by another thread of the parent.
_LIBC = _load_libc()


def _child_setup(memory_limit_bytes: int) -> Callable[[], None]:
    def setup() -> None:
        # The child dies with the worker process: a worker killed with SIGKILL cannot
        # clean up, and an orphaned Tesseract could otherwise run on for minutes.
        prctl = getattr(_LIBC, "prctl", None)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if memory_limit_bytes > 0:
            limits = (memory_limit_bytes, memory_limit_bytes)
            resource.setrlimit(resource.RLIMIT_AS, limits)

    return setup


def run_tool(
    args: Sequence[str],
    *,
    timeout_s: float,
    memory_limit_bytes: int = 0,
    env: dict[str, str] | None = None,
) -> ToolResult:
    """Run `args` and return its exit status and output.

    The child is killed (SIGKILL) when it runs past `timeout_s`, and also when this
    call is interrupted by any exception, such as RQ's own job time limit. Raises
    ToolTimeout on time-out and FileNotFoundError when the program is not installed.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_child_setup(memory_limit_bytes),
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise ToolTimeout(os.path.basename(args[0]), timeout_s) from None
    except BaseException:
        _kill(process)
        raise
    return ToolResult(process.returncode, stdout, stderr, time.monotonic() - started)


def _kill(process: subprocess.Popen) -> None:
    process.kill()
    # Reap the child and close its pipes so neither a zombie nor a descriptor stays.
    process.communicate()
