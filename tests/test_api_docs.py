"""The API reference in docs/ is generated from the code; it must not drift from it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_docs_openapi_and_api_index_match_the_code():
    # when
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "write_openapi.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    # then
    assert result.returncode == 0, result.stderr
