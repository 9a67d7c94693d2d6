""".env.example and the settings agree both ways, and `make` lets `.env` speak.

Read from the Settings model, never from a list here, so a new setting fails the test until
`.env.example` documents it. A line `KEY=value` documents a setting with its default; a
commented `# KEY=value` one whose default is "unset" (None) or computed from others.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr, TypeAdapter

from hotdeal_core.settings import Settings, local_database_url, local_redis_url

ROOT = Path(__file__).resolve().parents[2]
INFRA_PORTS = {"HOTDEAL_PG_PORT", "HOTDEAL_REDIS_PORT", "HOTDEAL_KAFKA_PORT"}
PORTS_SH = ROOT / "scripts" / "lib" / "ports.sh"


def script_ports() -> dict[str, str]:
    """The scripts' default ports (scripts/lib/ports.sh's `: "${NAME:=value}"` lines)."""
    return dict(re.findall(r'^: "\$\{(\w+):=([^}]*)\}"$', PORTS_SH.read_text(), re.MULTILINE))
_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def documented() -> dict[str, tuple[bool, str]]:
    """KEY -> (commented out, value) of every variable line of .env.example."""
    found: dict[str, tuple[bool, str]] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        key, commented = match[2], match[1] is not None
        if key in found and not (commented or found[key][0]):
            raise AssertionError(f"{key} is set twice")
        if not commented or key not in found:  # a set line wins over a mention in a comment
            found[key] = (commented, match[3])
    return found


def fields() -> dict[str, str]:
    return {name.upper(): name for name in Settings.model_fields}


def test_every_setting_is_in_env_example() -> None:
    missing = set(fields()) - set(documented())
    assert not missing, f".env.example does not document {sorted(missing)}"


def test_every_variable_in_env_example_is_a_setting_or_an_infra_port() -> None:
    unknown = set(documented()) - set(fields()) - INFRA_PORTS
    assert not unknown, f".env.example documents what is no setting: {sorted(unknown)}"


def test_env_example_values_are_the_defaults() -> None:
    """Copying .env.example to .env changes nothing: its values are the code's defaults."""
    for key, (commented, value) in documented().items():
        if key in INFRA_PORTS or commented:
            continue
        info = Settings.model_fields[fields()[key]]
        assert info.annotation is not None
        parsed = TypeAdapter(info.annotation).validate_python(value)
        default = info.default
        if isinstance(default, SecretStr):
            default, parsed = default.get_secret_value(), parsed.get_secret_value()
        assert parsed == default, f"{key}={value} in .env.example, default {default!r}"


def test_env_example_infra_ports_are_the_scripts_defaults() -> None:
    ports = script_ports()
    for key in INFRA_PORTS:
        assert documented()[key] == (False, ports[key]), key


def test_only_unset_or_derived_settings_are_commented_out() -> None:
    for key, (commented, _) in documented().items():
        if commented and key not in INFRA_PORTS:
            info = Settings.model_fields[fields()[key]]
            assert info.default is None, f"{key} is commented out but defaults to " \
                                         f"{info.default!r}: write it as KEY=default"


# ---------------------------------------------------------------- make and .env
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
PRINT = ("print-%: ; @echo '$($*)'", "printenv-%: ; @printenv $* || echo '(unset)'")


def make_sees(tmp_path: Path, target: str, env_file: str | None,
              environ: dict[str, str] | None = None) -> str:
    """What the repository's Makefile makes of a variable, run in a copy of it."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "scripts" / "lib").mkdir(parents=True, exist_ok=True)
    shutil.copy(PORTS_SH, tmp_path / "scripts" / "lib" / "ports.sh")
    (tmp_path / ".env").unlink(missing_ok=True)
    if env_file is not None:
        (tmp_path / ".env").write_text(env_file)
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS",
                        "ALLOW_DEV_SECRETS", "MAKEFLAGS", "MFLAGS", *script_ports()}}
    args = ["make", "-s", "--no-print-directory", *(f"--eval={p}" for p in PRINT), target]
    return subprocess.run(args, cwd=tmp_path, env={**env, **(environ or {})}, text=True,
                          capture_output=True, check=True, timeout=30).stdout.strip()


@needs_make
def test_make_exports_the_env_files_value_not_its_own_default(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://me:pw@db.example:5432/mine"
    env_file = f"# a comment\nDATABASE_URL={url}\nALLOW_DEV_SECRETS=false\n"
    assert make_sees(tmp_path, "printenv-DATABASE_URL", env_file) == url
    # ...except ALLOW_DEV_SECRETS: make's targets allow the development secrets whatever
    # .env says (a copy of .env.example says false), as they did before
    assert make_sees(tmp_path, "printenv-ALLOW_DEV_SECRETS", env_file) == "true"
    assert make_sees(tmp_path, "printenv-ALLOW_DEV_SECRETS", env_file,
                     {"ALLOW_DEV_SECRETS": "false"}) == "false"
    # what .env does not set keeps the Makefile's default
    assert make_sees(tmp_path, "printenv-REDIS_URL", env_file) == local_redis_url()


@needs_make
def test_the_environment_and_the_command_line_still_win_over_env_file(tmp_path: Path) -> None:
    env_file = "REDIS_URL=redis://from-env-file:6379/0\n"
    assert make_sees(tmp_path, "printenv-REDIS_URL", env_file,
                     {"REDIS_URL": "redis://from-shell:6379/0"}) == "redis://from-shell:6379/0"
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / ".env").write_text(env_file)
    out = subprocess.run(["make", "-s", f"--eval={PRINT[1]}", "printenv-REDIS_URL",
                          "REDIS_URL=redis://from-command-line:6379/0"], cwd=tmp_path,
                         text=True, capture_output=True, check=True, timeout=30).stdout
    assert out.strip() == "redis://from-command-line:6379/0"


@needs_make
def test_a_copy_of_env_example_gives_make_the_same_values_as_no_env_file(
        tmp_path: Path) -> None:
    example = (ROOT / ".env.example").read_text()
    for name in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "ALLOW_DEV_SECRETS",
                 "HOTDEAL_PG_PORT"):
        assert make_sees(tmp_path, f"printenv-{name}", example) == \
            make_sees(tmp_path, f"printenv-{name}", None), name


@needs_make
def test_without_env_file_make_uses_its_defaults(tmp_path: Path) -> None:
    assert make_sees(tmp_path, "printenv-DATABASE_URL", None) == local_database_url()
    assert make_sees(tmp_path, "printenv-ALLOW_DEV_SECRETS", None) == "true"


@needs_make
def test_make_takes_the_scripts_default_ports_and_the_environment_wins(tmp_path: Path) -> None:
    for name, value in script_ports().items():
        assert make_sees(tmp_path, f"print-{name}", None) == value, name
    assert make_sees(tmp_path, "printenv-DATABASE_URL", None,
                     {"HOTDEAL_PG_PORT": "5433"}) == local_database_url(port=5433)
