"""Process liveness (devtools/procs.py `running`, and scripts/lib/common.sh `pid_alive` for
the scripts): a killed process that is not reaped yet (a zombie) and a pid reused by another
program are not "running"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devtools.procs import Proc, running

ROOT = Path(__file__).resolve().parents[2]


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
    assert not running(2**22 + 12345, "order_api")  # no such pid
    assert not running(None)


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


def _script_alive(pid_file: Path, pattern: str = "") -> bool:
    script = f'ROOT="{ROOT}" LOG_TAG=t; . "$ROOT/scripts/lib/common.sh"; pid_alive "$1" "$2"'
    return subprocess.run(["bash", "-c", script, "_", str(pid_file), pattern],
                          check=False).returncode == 0


def test_the_scripts_see_a_zombie_and_a_reused_pid_as_not_running(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()",
                              "kafka.Kafka"], stdin=subprocess.PIPE)
    try:
        pid_file.write_text(f"{child.pid}\n")
        assert _script_alive(pid_file) and _script_alive(pid_file, r"kafka\.Kafka")
        assert not _script_alive(pid_file, "redis-server")  # another program's pid
        assert child.stdin is not None
        child.stdin.close()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie
        assert running(child.pid) is False and not _script_alive(pid_file)
    finally:
        child.wait(timeout=30)
    assert not _script_alive(pid_file) and not _script_alive(tmp_path / "missing.pid")
