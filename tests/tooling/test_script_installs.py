"""scripts/lib/common.sh `apt_ensure`, which scripts/ensure-*.sh and the Redis scripts share:
it installs Debian's package only when its command is missing, and says why it failed."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = "hotdeal-test-tool"  # on no machine's PATH


def _stubs(tmp_path: Path, apt_exit: int = 0) -> Path:
    """`id -u` says root; `apt-get` logs its arguments and, on install, provides TOOL."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")
    (bin_dir / "apt-get").write_text(
        f'#!/bin/sh\necho "apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >>"{tmp_path}/apt.log"\n'
        f'echo "E: no such mirror"\n'
        f'[ {apt_exit} = 0 ] || exit {apt_exit}\n'
        f'case "$*" in *install*) printf "#!/bin/sh\\n" >"{bin_dir}/{TOOL}"; '
        f'chmod +x "{bin_dir}/{TOOL}";; esac\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    return bin_dir


def _ensure(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    script = f'ROOT="{ROOT}" LOG_TAG=t; . "$ROOT/scripts/lib/common.sh"; ' \
             f"apt_ensure {TOOL} {TOOL}-pkg --no-install-recommends"
    return subprocess.run(["bash", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                          capture_output=True, text=True, check=False, timeout=30)


def test_a_missing_command_is_installed_from_its_package(tmp_path: Path) -> None:
    done = _ensure(_stubs(tmp_path))
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[0].startswith("apt-get update")
    assert calls[1] == (f"apt-get install -y -qq --no-install-recommends {TOOL}-pkg "
                        "DEBIAN_FRONTEND=noninteractive")


def test_a_command_on_the_path_installs_nothing(tmp_path: Path) -> None:
    bin_dir = _stubs(tmp_path)
    assert _ensure(bin_dir).returncode == 0
    (tmp_path / "apt.log").unlink()
    assert _ensure(bin_dir).returncode == 0
    assert not (tmp_path / "apt.log").exists()


def test_a_failed_install_exits_with_apt_gets_own_words(tmp_path: Path) -> None:
    done = _ensure(_stubs(tmp_path, apt_exit=100))
    assert done.returncode != 0
    assert f"apt-get install {TOOL}-pkg failed" in done.stderr
    assert "E: no such mirror" in done.stderr
