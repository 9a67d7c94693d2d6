"""Write the API documents (OpenAPI of the order API, AsyncAPI of the two consumers) to
docs/api/: `python -m devtools.apidocs [--check]` (--check: exit 1 if one is out of date)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hotdeal_core.settings import KAFKA_PORT, Settings
from order_api.app import create_app
from reconciler.app import create_app as reconciler_app
from stock_worker.app import create_app as stock_worker_app

OUT = Path(__file__).resolve().parents[1] / "docs" / "api"


def documents() -> dict[str, Any]:
    # Documented with the defaults, whatever this shell's environment says.
    settings = Settings(_env_file=None, kafka_bootstrap_servers=f"127.0.0.1:{KAFKA_PORT}",
                        kafka_topic_prefix="")
    return {
        "openapi.json": create_app(settings).openapi(),
        "asyncapi-stock-worker.json": json.loads(
            stock_worker_app(settings).schema.to_specification().to_json()),
        "asyncapi-reconciler.json": json.loads(
            reconciler_app(settings).schema.to_specification().to_json()),
    }


def render(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main() -> None:
    check = "--check" in sys.argv
    stale = []
    for name, doc in documents().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != render(doc):
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(render(doc))
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run: python -m devtools.apidocs)")
        sys.exit(1)


if __name__ == "__main__":
    main()
