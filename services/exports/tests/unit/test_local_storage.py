"""The local storage adapter: a file appears under its key only when committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from exports.storage import LocalStorage, StorageMissingError


async def test_a_file_appears_only_at_commit(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    writer = storage.writer("t/e/1.csv")
    await writer.write(b"a;b\n")
    assert not await storage.exists("t/e/1.csv")
    assert await writer.commit() == 4
    assert await storage.exists("t/e/1.csv")
    assert b"".join([c async for c in storage.read("t/e/1.csv")]) == b"a;b\n"


async def test_an_aborted_or_abandoned_writer_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    aborted = storage.writer("t/e/1.csv")
    await aborted.write(b"x")
    await aborted.abort()
    # a writer whose process died left only its .partial
    (tmp_path / "t" / "e" / "2.csv.partial").write_bytes(b"y")
    await storage.delete("t/e/2.csv")
    assert sorted(p.name for p in (tmp_path / "t" / "e").iterdir()) == []
    with pytest.raises(StorageMissingError):
        [c async for c in storage.read("t/e/1.csv")]


def test_keys_stay_inside_the_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside the root"):
        LocalStorage(tmp_path).path("../escape.csv")
