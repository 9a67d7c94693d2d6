"""Readiness probe for Kafka: a real metadata request plus a group-coordinator lookup.

An open port is not readiness: the broker must answer metadata and have its offsets topic
ready, or the first consumer group join fails. Exit 0 when ready, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient


async def probe(bootstrap: str, timeout: float) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        await asyncio.wait_for(admin.describe_cluster(), timeout)
        # Needs the group coordinator, i.e. a ready __consumer_offsets topic.
        await asyncio.wait_for(admin.describe_consumer_groups(["hotdeal-readiness"]), timeout)
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    try:
        asyncio.run(probe(args.bootstrap, args.timeout))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        print(f"kafka not ready at {args.bootstrap}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"kafka ready at {args.bootstrap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
