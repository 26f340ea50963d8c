"""Where file contents live: a local directory or an S3 bucket, behind one interface.

Keys are made by :func:`new_key` (160 random bits), never from a file's name or id, so
no one can guess where an object is. Neither backend ever exposes an object by itself:
a download goes through apicrud (streamed, or a URL it signed for a short time).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apicrud.config import Settings

CHUNK = 64 * 1024


def new_key() -> str:
    """An unguessable storage key."""
    return secrets.token_hex(20)


@dataclass(frozen=True)
class ObjectInfo:
    """What storage says about a stored object."""

    size: int
    head: bytes  # its first bytes (content sniffing)
    sha256: str


class Writer:
    """Receives one object's bytes as they arrive; :meth:`commit` makes it visible under
    its key, :meth:`abort` forgets it. Counts and hashes what was written."""

    def __init__(self) -> None:
        self.size = 0
        self.digest = hashlib.sha256()
        self.head = b""

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self.digest.update(data)
        if len(self.head) < 1024:
            self.head += data[:1024 - len(self.head)]
        self._write(data)

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class Storage:
    """The operations apicrud needs from a store of objects."""

    name = "storage"

    def writer(self, key: str) -> Writer:
        raise NotImplementedError

    def read(self, key: str, chunk: int = CHUNK) -> Generator[bytes, None, None]:
        """The object's bytes in chunks (never all at once)."""
        raise NotImplementedError

    def info(self, key: str) -> ObjectInfo | None:
        """Size, first bytes and sha256 of a stored object (read through once), or None."""
        digest = hashlib.sha256()
        size, head, found = 0, b"", False
        try:
            for block in self.read(key):
                found = True
                size += len(block)
                digest.update(block)
                if len(head) < 1024:
                    head += block[:1024 - len(head)]
        except FileNotFoundError:
            return None
        if not found and not self.exists(key):
            return None
        return ObjectInfo(size, head, digest.hexdigest())

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""
        raise NotImplementedError

    def presign_get(self, key: str, filename: str, content_type: str,
                    ttl: int) -> str | None:
        """A URL the storage itself serves for ``ttl`` seconds, or None (apicrud signs
        its own)."""
        return None

    def presign_put(self, key: str, content_type: str, ttl: int) -> dict[str, Any] | None:
        """How a client uploads the object directly (``url``, ``method``, ``headers``),
        or None when the storage cannot take direct uploads (apicrud takes them)."""
        return None


class _LocalWriter(Writer):
    def __init__(self, final: Path, tmp_dir: Path) -> None:
        super().__init__()
        self.final = final
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="up-")
        self.tmp = Path(name)
        self.fh = os.fdopen(fd, "wb")

    def _write(self, data: bytes) -> None:
        self.fh.write(data)

    def commit(self) -> None:
        self.fh.close()
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


class LocalStorage(Storage):
    """Objects as files under one directory (``<root>/<key[:2]>/<key>``), written to a
    temporary file first and renamed into place when complete."""

    name = "local"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.tmp = self.root / ".incoming"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("not a storage key")  # never a path from outside
        return self.root / key[:2] / key

    def writer(self, key: str) -> Writer:
        return _LocalWriter(self.path(key), self.tmp)

    def read(self, key: str, chunk: int = CHUNK) -> Generator[bytes, None, None]:
        with open(self.path(key), "rb") as fh:
            while True:
                block = fh.read(chunk)
                if not block:
                    return
                yield block

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


class _S3Writer(Writer):
    """A multipart upload: parts of ``part_size`` bytes go out as they fill, so memory
    holds one part at most."""

    def __init__(self, storage: S3Storage, key: str, part_size: int) -> None:
        super().__init__()
        self.s3 = storage
        self.key = key
        self.part_size = part_size
        self.buffer = bytearray()
        self.parts: list[dict[str, Any]] = []
        self.upload_id: str | None = None

    def _write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            self._send(bytes(self.buffer[:self.part_size]))
            del self.buffer[:self.part_size]

    def _send(self, part: bytes) -> None:
        client = self.s3.client
        if self.upload_id is None:
            self.upload_id = client.create_multipart_upload(
                Bucket=self.s3.bucket, Key=self.s3.object_key(self.key))["UploadId"]
        number = len(self.parts) + 1
        tag = client.upload_part(Bucket=self.s3.bucket, Key=self.s3.object_key(self.key),
                                 UploadId=self.upload_id, PartNumber=number,
                                 Body=part)["ETag"]
        self.parts.append({"ETag": tag, "PartNumber": number})

    def commit(self) -> None:
        client, bucket, key = self.s3.client, self.s3.bucket, self.s3.object_key(self.key)
        if self.upload_id is None:  # small: one PUT
            client.put_object(Bucket=bucket, Key=key, Body=bytes(self.buffer))
            return
        if self.buffer:
            self._send(bytes(self.buffer))
            self.buffer.clear()
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=self.upload_id,
                                         MultipartUpload={"Parts": self.parts})

    def abort(self) -> None:
        self.buffer.clear()
        if self.upload_id is not None:
            self.s3.client.abort_multipart_upload(Bucket=self.s3.bucket,
                                                  Key=self.s3.object_key(self.key),
                                                  UploadId=self.upload_id)


class S3Storage(Storage):
    """Objects in an S3 bucket (AWS or any S3-compatible service), under ``prefix``.

    The bucket stays private: objects are written without an ACL and read only by
    apicrud or through a URL it presigned for a short time.
    """

    name = "s3"
    PART_SIZE = 8 * 1024 * 1024  # S3's smallest part is 5 MiB

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str = "us-east-1", access_key_id: str | None = None,
                 secret_access_key: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 3}))

    def object_key(self, key: str) -> str:
        return self.prefix + key

    def writer(self, key: str) -> Writer:
        return _S3Writer(self, key, self.PART_SIZE)

    def read(self, key: str, chunk: int = CHUNK) -> Generator[bytes, None, None]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from None
            raise
        try:
            yield from body.iter_chunks(chunk)
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError:
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def presign_get(self, key: str, filename: str, content_type: str,
                    ttl: int) -> str | None:
        from apicrud.files.sniff import disposition

        return self.client.generate_presigned_url(
            "get_object", ExpiresIn=ttl,
            Params={"Bucket": self.bucket, "Key": self.object_key(key),
                    "ResponseContentDisposition": disposition(filename),
                    "ResponseContentType": content_type})

    def presign_put(self, key: str, content_type: str, ttl: int) -> dict[str, Any] | None:
        url = self.client.generate_presigned_url(
            "put_object", ExpiresIn=ttl,
            Params={"Bucket": self.bucket, "Key": self.object_key(key)})
        return {"url": url, "method": "PUT", "headers": {}}


def make_storage(settings: Settings) -> Storage:
    """The storage the settings choose (``file_storage``)."""
    if settings.file_storage == "s3":
        return S3Storage(settings.s3_bucket, prefix=settings.s3_prefix,
                         endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                         access_key_id=settings.s3_access_key_id,
                         secret_access_key=settings.s3_secret_access_key)
    root = settings.path("file_dir") if settings.file_dir else \
        settings.path("data_dir") / "files"
    return LocalStorage(root)


def storage_for(services: Any) -> Storage:
    """The process's one Storage (made from the settings on first use, kept in the
    services' ``file_storage`` slot)."""
    if services.file_storage is None:
        services.file_storage = make_storage(services.settings)
    return services.file_storage
