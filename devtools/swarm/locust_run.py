"""Locust headless for one swarm (--csv with --csv-full-history, --html, --json-file)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from devtools.swarm.config import BIN, ROOT, SwarmConfig
from hotdeal_cli.main import parse_duration


def run_locust(cfg: SwarmConfig, env: Mapping[str, str], prefix: Path) -> tuple[str, int]:
    """Locust headless; its console (live stats every 2 s) is echoed and kept in locust.log."""
    cmd = [str(BIN / "locust"), "-f", "loadtest/locustfile.py", "--headless", "-H", cfg.api_url,
           "--csv", str(prefix), "--csv-full-history", "--html", str(prefix.parent / "locust.html"),
           "--json-file", str(prefix)]
    if cfg.shape == "constant":
        cmd += ["-u", str(cfg.users), "-r", str(cfg.users), "-t", cfg.duration]
    if cfg.processes > 1:
        cmd += ["--processes", str(cfg.processes)]
    limit = (parse_duration(cfg.duration) if cfg.shape == "constant" else 600.0) + 120.0
    with (prefix.parent / "locust.log").open("w") as log:
        popen = subprocess.Popen(cmd, cwd=ROOT, env=dict(env), text=True, bufsize=1,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        watchdog = threading.Timer(limit, popen.kill)
        watchdog.start()
        assert popen.stdout is not None
        for line in popen.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = popen.wait()
        watchdog.cancel()
    return shlex.join(cmd), code
