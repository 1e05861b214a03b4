"""`python -m bench` runs every benchmark; `python -m bench NAME` runs one."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

BENCHMARKS = {
    "outbox_pipeline": "bench.outbox_pipeline",
    "checkout_pay": "bench.checkout_pay",
    "webhooks_ingest": "bench.webhooks_ingest",
    "capture_shipment": "bench.capture_shipment",
    "exports_copy": "bench.exports_copy",
    "refunds": "bench.refunds",
    "payouts_ledger": "bench.payouts_ledger",
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", nargs="?", choices=sorted(BENCHMARKS), help="run only this one")
    args = parser.parse_args()
    names = [args.name] if args.name else list(BENCHMARKS)
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        asyncio.run(module.main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
