"""Process liveness for `make up/down/status`: a killed process that is not reaped yet (a
zombie) and a pid reused by another program are not "running"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devtools.procs import Proc, process_runs


def _proc_with_pid_file(tmp_path: Path, pid: int) -> Proc:
    proc = Proc("order-api", tmp_path)
    proc.pid_file.write_text(f"{pid}\n")
    return proc


def test_a_zombie_is_not_alive(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass", "order_api"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    try:
        os.kill(child.pid, 0)  # what fooled the old check
        assert not _proc_with_pid_file(tmp_path, child.pid).alive()
    finally:
        child.wait()


def test_a_pid_reused_by_another_program_is_not_alive(tmp_path: Path) -> None:
    assert not _proc_with_pid_file(tmp_path, os.getpid()).alive()  # pytest, not order_api
    assert not process_runs(2**22 + 12345, "order_api")  # no such pid


def test_a_running_process_of_the_module_is_alive(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()",
                              "order_api"], stdin=subprocess.PIPE)
    try:
        assert _proc_with_pid_file(tmp_path, child.pid).alive()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    assert not _proc_with_pid_file(tmp_path, child.pid).alive()
