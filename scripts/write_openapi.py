"""Write docs/openapi/<service>.json from each service's declared endpoints.

The same document is served live at `/openapi.json`; this keeps a reviewed copy in the docs.
`--check` fails when a committed copy is out of date (run in the tests).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from common.http.openapi import build_openapi

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ["tenants"]


def render(service: str) -> str:
    api = importlib.import_module(f"{service}.api").api
    return json.dumps(build_openapi(api), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    out = ROOT / "docs" / "openapi"
    out.mkdir(parents=True, exist_ok=True)
    stale = []
    for service in SERVICES:
        path = out / f"{service}.json"
        text = render(service)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("out of date (run make openapi): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
