"""`python -m reconciler`: run until SIGTERM/SIGINT (a flush in progress finishes first)."""

from __future__ import annotations

import asyncio
import logging

from hotdeal_core.settings import load_settings
from reconciler.app import create_app


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    asyncio.run(create_app(settings).run())


if __name__ == "__main__":
    main()
