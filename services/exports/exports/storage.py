"""The storage port of export files, and its two adapters.

A writer takes the file chunk by chunk and makes it visible only at `commit()`: a local file is
written under `<key>.partial` and renamed (atomic on one filesystem); an S3 object is a
multipart upload that exists only once completed. A writer that dies before `commit()` leaves
no file under the final key (a stale `.partial` or an unfinished multipart upload, which
`delete` and the bucket's lifecycle rule clean up).

S3 goes through boto3 in worker threads rather than aiobotocore: boto3 is the maintained
reference client, aiobotocore pins botocore to narrow ranges (and so fights other packages for
it), and the calls here are few and large (one per 8 MiB part), so a thread per call costs
nothing measurable while the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

READ_CHUNK = 256 * 1024


class StorageWriter(Protocol):
    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> int:
        """Make the file visible under its key; returns its size in bytes."""
        ...

    async def abort(self) -> None: ...


class Storage(Protocol):
    def writer(self, key: str) -> StorageWriter: ...

    def read(self, key: str) -> AsyncIterator[bytes]: ...

    async def delete(self, key: str) -> None:
        """Remove the file and whatever a dead writer left for it (no error if absent)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def close(self) -> None: ...


class StorageMissingError(Exception):
    pass


# -- a local directory ---------------------------------------------------------------------


class LocalStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key outside the root: {key!r}")
        return path

    def writer(self, key: str) -> LocalWriter:
        return LocalWriter(self.path(key))

    async def read(self, key: str) -> AsyncIterator[bytes]:
        try:
            handle = open(self.path(key), "rb")  # noqa: ASYNC230, SIM115 - small local reads
        except FileNotFoundError:
            raise StorageMissingError(key) from None
        with handle:
            while chunk := handle.read(READ_CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        path = self.path(key)
        for victim in (path, path.with_name(path.name + ".partial")):
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()

    async def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    async def close(self) -> None:
        return None


class LocalWriter:
    """Writes go to the page cache through a 1 MiB buffer; `commit` fsyncs, then renames."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(self.partial, "wb", buffering=1024 * 1024)  # noqa: SIM115
        self._size = 0

    async def write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)
        self._size += len(chunk)

    async def commit(self) -> int:
        assert self._file is not None
        handle, self._file = self._file, None

        def finish() -> None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(self.partial, self.path)

        await asyncio.to_thread(finish)
        return self._size

    async def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self.partial.unlink()


# -- S3-compatible object storage ----------------------------------------------------------


class S3Storage:
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = 8 * 1024 * 1024,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def object_key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self, self.object_key(key))

    async def read(self, key: str) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            response = await asyncio.to_thread(
                self.client.get_object, Bucket=self.bucket, Key=self.object_key(key)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StorageMissingError(key) from None
            raise
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, READ_CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(
            self.client.delete_object, Bucket=self.bucket, Key=self.object_key(key)
        )

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(
                self.client.head_object, Bucket=self.bucket, Key=self.object_key(key)
            )
        except ClientError:
            return False
        return True

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)


class S3Writer:
    """A multipart upload: parts of `part_size` bytes are uploaded as they fill (memory stays
    at one part), and the object appears only when the upload is completed."""

    def __init__(self, storage: S3Storage, object_key: str) -> None:
        self.storage = storage
        self.key = object_key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0

    async def _start(self) -> str:
        if self._upload_id is None:
            created = await asyncio.to_thread(
                self.storage.client.create_multipart_upload,
                Bucket=self.storage.bucket,
                Key=self.key,
                ContentType="text/csv; charset=utf-8",
            )
            self._upload_id = str(created["UploadId"])
        return self._upload_id

    async def _flush(self) -> None:
        upload_id = await self._start()
        number = len(self._parts) + 1
        body = bytes(self._buffer)
        self._buffer.clear()
        part = await asyncio.to_thread(
            self.storage.client.upload_part,
            Bucket=self.storage.bucket,
            Key=self.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self._size += len(chunk)
        if len(self._buffer) >= self.storage.part_size:
            await self._flush()

    async def commit(self) -> int:
        if self._buffer or not self._parts:
            await self._flush()  # the last part may be small (S3 allows it)
        await asyncio.to_thread(
            self.storage.client.complete_multipart_upload,
            Bucket=self.storage.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        return self._size

    async def abort(self) -> None:
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self.storage.client.abort_multipart_upload,
                    Bucket=self.storage.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                )
