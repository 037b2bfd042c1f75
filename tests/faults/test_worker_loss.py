"""Fault injection: workers killed with SIGKILL while they run a document's pages.

Slow (each scenario waits for a lease to expire), so it runs with `make test-faults`.
"""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from tests.conftest import CASES, DATA
from tests.support.stack import Stack, processes_in_sessions, stack_env

pytestmark = pytest.mark.faults


@pytest.fixture
def fault_stack(
    redis_base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("fault-stack")
    url = redis_base_url.rsplit("/", 1)[0] + "/4"
    Redis.from_url(url).flushdb()
    env = stack_env(url, root, SHUTDOWN_HANDOFF_SECONDS="1")
    stack = Stack(env=env, log_dir=root / "logs")
    stack.start()
    yield stack
    stack.stop()


def ten_page_pdf(tmp_path: Path) -> Path:
    output = tmp_path / "ten.pdf"
    parts = [DATA / "scan_3p.pdf"] * 3 + [CASES / "ok_vector_1page.pdf"]
    subprocess.run(["pdfunite", *map(str, parts), str(output)], check=True)
    return output


def kill_worker(stack: Stack, name: str) -> int:
    """SIGKILL every process of one worker (itself, its horse, their tools)."""
    pids = processes_in_sessions({stack.processes[name].pid})
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return len(pids)


def test_killed_worker_pages_finish(fault_stack: Stack, tmp_path: Path) -> None:
    job_id = fault_stack.submit_ok(ten_page_pdf(tmp_path))
    deadline = time.monotonic() + 60
    while fault_stack.result(job_id).json()["pages_done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    busy = {
        name
        for name, pids in fault_stack.worker_pids().items()
        if len(pids) > 2  # the worker, its scheduler, and a horse
    }
    victim = sorted(busy)[0] if busy else "worker-1"

    killed_at = time.monotonic()
    assert kill_worker(fault_stack, victim) >= 2
    body = fault_stack.wait_for(job_id, timeout_s=120)
    recovered_in = time.monotonic() - killed_at

    assert body["status"] == "finished", body
    assert body["partial"] is False
    assert [page["state"] for page in body["pages"]] == ["done"] * 10
    assert recovered_in < 90
    fault_stack.processes[victim].wait(timeout=5)  # reap the killed leader
    assert processes_in_sessions({fault_stack.processes[victim].pid}) == []
    log = (fault_stack.log_dir / "worker-1.log").read_text() + (
        fault_stack.log_dir / "worker-2.log"
    ).read_text()
    assert "stage of a lost worker enqueued again" in log
    # The killed horse's job directory goes when a worker starts on this host.
    fault_stack.restart(victim)
    assert fault_stack.leftovers(wait_s=15) == []


def test_sigterm_hands_back_page(fault_stack: Stack, tmp_path: Path) -> None:
    """A deploy: SIGTERM, and the worker must leave quickly without losing its page."""
    job_id = fault_stack.submit_ok(ten_page_pdf(tmp_path))
    deadline = time.monotonic() + 60
    victim = None
    while victim is None:
        assert time.monotonic() < deadline
        for name, pids in fault_stack.worker_pids().items():
            if len(pids) > 3:  # the worker, its scheduler, a horse and its tool
                victim = name
        time.sleep(0.05)

    leader = fault_stack.processes[victim]
    stopped_at = time.monotonic()
    leader.send_signal(signal.SIGTERM)
    leader.wait(timeout=20)
    stopped_in = time.monotonic() - stopped_at
    body = fault_stack.wait_for(job_id, timeout_s=120)

    assert stopped_in < 10
    assert body["status"] == "finished", body
    assert [page["state"] for page in body["pages"]] == ["done"] * 10
    assert processes_in_sessions({leader.pid}) == []
    log = (fault_stack.log_dir / f"{victim}.log").read_text()
    assert "handing the running stage back" in log
    fault_stack.restart(victim)
    assert fault_stack.leftovers(wait_s=15) == []


def test_all_workers_down_for_a_minute(fault_stack: Stack, tmp_path: Path) -> None:
    """Every worker killed mid-document, none running for 60 s, then both restarted."""
    job_id = fault_stack.submit_ok(ten_page_pdf(tmp_path))
    deadline = time.monotonic() + 60
    while fault_stack.result(job_id).json()["pages_done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    for name in ("worker-1", "worker-2"):
        kill_worker(fault_stack, name)
        fault_stack.processes[name].wait(timeout=5)
    during = fault_stack.result(job_id).json()
    time.sleep(60)
    for name in ("worker-1", "worker-2"):
        fault_stack.restart(name)
    body = fault_stack.wait_for(job_id, timeout_s=180)

    assert during["status"] == "started"
    assert body["status"] == "finished", body
    assert [page["state"] for page in body["pages"]] == ["done"] * 10
    # A killed horse's job directory is removed when a worker starts again.
    deadline = time.monotonic() + 10
    while (
        list(fault_stack.tmp_dir.glob("pindai-job-*")) and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert list(fault_stack.tmp_dir.glob("pindai-job-*")) == []
    assert fault_stack.tool_processes() == []
