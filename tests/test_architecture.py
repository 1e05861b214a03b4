"""Domain modules do no I/O. `make lint` checks `**.domain` with import-linter (direct and
indirect imports); its wildcards cannot match a partial module name, so this test covers the
`*_domain` modules too (direct imports), wherever they are."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IO_LIBRARIES = {"asyncpg", "aio_pika", "aiormq", "aiohttp"}


def domain_modules() -> list[Path]:
    found = []
    for base in [ROOT / "libs", ROOT / "services"]:
        for path in base.rglob("*.py"):
            if "tests" in path.parts or ".venv" in path.parts:
                continue
            if path.stem == "domain" or path.stem.endswith("_domain"):
                found.append(path)
    return found


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_domain_module_imports_an_io_library():
    # given
    modules = domain_modules()
    assert len(modules) >= 4  # tenants, checkout, webhooks, capture at least
    # when
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & IO_LIBRARIES)
        for path in modules
        if imported_roots(path) & IO_LIBRARIES
    }
    # then
    assert offenders == {}
