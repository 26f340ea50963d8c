"""FileController: a resource of files whose metadata is an ordinary record.

Everything about the record (find, get, update, trash, restore, privacy, memberships)
is BasicCRUD's and the evaluator's; this class adds what moves bytes:

- ``create``: a multipart/form-data upload, streamed to storage while it is counted,
  hashed and its type detected from the bytes; refused before a byte is stored when the
  form's values fail a create check (policy, references, grants ``files`` and
  ``storage_bytes``) or the declared length is over the limit, and refused (nothing
  kept) when the bytes turn out too many or of a type the field does not allow;
- ``create_direct`` and ``confirm``: the client PUTs the bytes to a URL apicrud signed
  (the storage's own presigned URL on S3), then apicrud checks size, type and sha256
  of what was stored;
- ``download``, ``url``, ``signed_download``: the bytes, always as an attachment with
  ``nosniff`` and a type no browser runs (see :func:`apicrud.files.sniff.served_type`);
- ``before_purge``: purging the record deletes the object, once the purge is committed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from apicrud.context import Reply, RequestContext
from apicrud.crud.controller import BasicCRUD
from apicrud.crypto import derive_key
from apicrud.db.base import iso_utc, new_id
from apicrud.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationProblem,
    required,
)
from apicrud.files import sniff
from apicrud.files.models import PENDING, READY
from apicrud.files.pictures import PICTURE_TYPES, TASK_PICTURE
from apicrud.files.storage import Storage, Writer, new_key, storage_for
from apicrud.files.upload import FORM_OVERHEAD, coerce_fields
from apicrud.i18n import N_
from apicrud.spec.operations import column_problem, validation_errors

if TYPE_CHECKING:
    from apicrud.crud.registry import ResourceSpec
    from apicrud.services import Offline, Services

log = logging.getLogger("apicrud.files")

#: the grant limiting the bytes of files one user holds
STORAGE_GRANT = "storage_bytes"
#: headers of every download: never rendered in the API's origin, never sniffed
DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy": "default-src 'none'; sandbox",
                    "Cross-Origin-Resource-Policy": "same-origin"}


class FileController(BasicCRUD):
    """BasicCRUD for a resource whose model has :class:`FileMixin`'s columns and whose
    schema declares one file field (``format: binary``)."""

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        super().__init__(resource, services)
        self.field = next(iter(resource.files), "content")
        spec = resource.files.get(self.field) or {}
        types = spec.get("x-content-types")
        if types is None and spec.get("contentMediaType") not in (None, "*/*"):
            types = [t.strip() for t in str(spec["contentMediaType"]).split(",")]
        self.field_types: tuple[str, ...] | None = tuple(types) if types else None
        self.field_max: int | None = spec.get("x-max-bytes")
        self.url_key = derive_key(services.settings.secret_key, b"apicrud file urls")

    @property
    def storage(self) -> Storage:
        return storage_for(self.services)

    # -- limits -----------------------------------------------------------------------
    @property
    def max_bytes(self) -> int:
        """The largest file one upload may carry (setting, narrowed by x-max-bytes)."""
        limit = self.services.settings.file_max_bytes
        return min(limit, self.field_max) if self.field_max else limit

    def type_allowed(self, ctype: str) -> bool:
        """Whether a detected content type may be stored in this field."""
        if not sniff.allowed(ctype, self.services.settings.file_types):
            return False
        return self.field_types is None or sniff.allowed(ctype, self.field_types)

    def _owner(self, ctx: RequestContext, data: dict[str, Any]) -> str | None:
        return data.get(required(self.resource.owner, "files owner")) or ctx.principal.uid

    def check_create(self, ctx: RequestContext, data: dict[str, Any],
                     quotas: bool = True) -> str:
        """BasicCRUD's checks, then the owner's ``storage_bytes`` grant for the file's
        size (so restores from the trashcan are held to it too)."""
        reason = super().check_create(ctx, data, quotas)
        self.check_storage(ctx, data)
        return reason

    def check_storage(self, ctx: RequestContext, data: dict[str, Any]) -> None:
        """403 (grant-exceeded) when the file would take its owner past ``storage_bytes``:
        the bytes of their live files, pending direct uploads included."""
        principal = ctx.principal
        if principal.is_admin or not principal.authenticated:
            return  # as GrantChecks: operators are not customers
        grants = self.services.grants
        uid = self._owner(ctx, data)
        limit = grants.get(uid, STORAGE_GRANT) if grants is not None else None
        if limit is None:
            return
        size = int(data.get("size") or 0)
        owner = getattr(self.model, required(self.resource.owner, "files owner"))
        used = ctx.db.execute(select(func.coalesce(func.sum(self.model.size), 0)).where(
            owner == uid, self.records.live())).scalar_one()
        if int(used) + size > limit:
            raise Forbidden(N_("grant %(grant)s exceeded: %(used)s of %(limit)s bytes used, this "
                               "file needs %(size)s", grant=STORAGE_GRANT, used=int(used),
                               limit=limit, size=size), slug="grant-exceeded",
                            grant=STORAGE_GRANT, limit=limit)

    def precheck(self, ctx: RequestContext, data: dict[str, Any]) -> None:
        """What can be refused before a byte is stored: every create check but the
        per-period grants (they are spent once, at the insert), and the record count,
        without the lock the insert takes (the insert checks again, locked)."""
        self.check_create(ctx, data, quotas=False)
        grants = self.services.grants
        principal = ctx.principal
        name = grants.record_grant(self.resource.name) if grants is not None else None
        if name and grants is not None and not principal.is_admin:  # (name implies grants)
            uid = self._owner(ctx, data)
            limit = grants.get(uid, name)
            owner = getattr(self.model, required(self.resource.owner, "files owner"))
            held = self.records.count(ctx.db, [owner == uid, self.records.live()])
            if limit is not None and held >= limit:
                raise Forbidden(N_("grant %(grant)s exceeded: at most %(limit)s %(resource)s "
                                   "records (held: %(held)s)", grant=name, limit=limit,
                                   resource=self.resource.name, held=held),
                                slug="grant-exceeded", grant=name, limit=limit)
        ctx.rollback()  # no transaction stays open while the bytes arrive

    # -- writing ----------------------------------------------------------------------
    def _form_values(self, ctx: RequestContext, fields: dict[str, Any],
                     typed: bool = False) -> dict[str, Any]:
        op = ctx.operation
        values = dict(fields) if typed else coerce_fields(fields, op.multipart_schema or {})
        errors = validation_errors(op.multipart_validator, values) \
            if op.multipart_validator is not None else {}
        for name, value in values.items():
            column = self.resource.fields.get(name)
            problem = column_problem(column, value) if column is not None else None
            if problem:
                errors.setdefault(name, problem)
        if errors:
            raise ValidationProblem(errors)
        return values

    def receive(self, chunks: Iterator[bytes], writer: Writer, limit: int) -> str:
        """Pass the bytes to ``writer``; the content type detected from them.

        :raises PayloadTooLarge: more than ``limit`` bytes
        :raises UnsupportedMediaType: a type the field does not allow
        """
        ctype = None
        for chunk in chunks:
            writer.write(chunk)
            if writer.size > limit:
                raise PayloadTooLarge(N_("%(field)s: larger than %(limit)s bytes", field=self.field,
                                         limit=limit),
                                      errors={self.field: N_("larger than %(limit)s bytes",
                                                             limit=limit)})
            if ctype is None and writer.size >= sniff.SNIFF_BYTES:
                ctype = self._check_type(writer.head)
        return ctype or self._check_type(writer.head)

    def _check_type(self, head: bytes) -> str:
        ctype = sniff.detect(head)
        if not self.type_allowed(ctype):
            raise UnsupportedMediaType(N_("%(field)s: %(ctype)s files are not accepted",
                                          field=self.field, ctype=ctype),
                                       errors={self.field: N_("%(ctype)s is not accepted",
                                                              ctype=ctype)})
        return ctype

    def _values(self, ctx: RequestContext, given: dict[str, Any]) -> dict[str, Any]:
        data = self._strip_read_only(given, None)
        if "name" in data:
            data["name"] = sniff.safe_name(data["name"])
        owner = self.resource.owner
        if owner and owner != "id":
            data.setdefault(owner, ctx.principal.uid)
        return data

    def _insert_file(self, ctx: RequestContext, data: dict[str, Any],
                     meta: dict[str, Any]) -> Any:
        values = {**data, **meta}
        self.check_create(ctx, values)
        record = self.model(**values)
        record.id = new_id(self.services.settings.id_prefix)
        ctx.db.add(record)
        self._flush(ctx)
        self.roles_changed(ctx, [record])
        return record

    def create(self, ctx: RequestContext) -> Reply:
        """``POST /file`` with a multipart/form-data body: form fields first, then the
        file part (named after the schema's file field); under the react-admin base, a
        JSON body with the file as a data URL too (:mod:`apicrud.files.data_url`)."""
        upload = ctx.upload
        if upload is None:
            raise UnsupportedMediaType(N_("send multipart/form-data (or use a direct upload)"))
        fields, part = upload.fields_and_file()
        if part is None or part.name != self.field:
            raise ValidationProblem({self.field: N_("is required (a file part)")
                                     if part is None else N_("the file part must be named %(name)s",
                                                             name=repr(self.field))})
        data = self._values(ctx, self._form_values(ctx, fields, upload.typed))
        data["name"] = sniff.safe_name(data.get("name") or part.filename)
        limit = self.max_bytes
        if (upload.declared is not None and upload.declared > limit + FORM_OVERHEAD) or \
                (part.size is not None and part.size > limit):
            raise PayloadTooLarge(N_("%(field)s: larger than %(limit)s bytes", field=self.field,
                                     limit=limit),
                                  errors={self.field: N_("larger than %(limit)s bytes",
                                                         limit=limit)})
        least = part.size if part.size is not None else min(upload.least_remaining(), limit)
        self.precheck(ctx, {**data, "size": least})
        key = new_key()
        writer = self.storage.writer(key)
        try:
            ctype = self.receive(part.chunks(), writer, limit)
            upload.finish()
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        # from here on the object exists: whatever fails later in this request (a
        # check at the insert, the flush, the commit) rolls back, and takes it along
        self._delete_on_rollback(ctx, key)
        meta = {"size": writer.size, "sha256": writer.digest.hexdigest(),
                "content_type": ctype, "storage_key": key, "state": READY}
        record = self._insert_file(ctx, data, meta)
        self._after_stored(ctx, record)
        body = {"id": record.id, **self.serialize(ctx, record)}
        return Reply(body, 201, {"Location": self._path(record), "ETag": self.etag(record)})

    def create_direct(self, ctx: RequestContext) -> Reply:
        """``POST /file/direct``: a pending record and a URL to PUT the bytes to for
        ``file_url_ttl`` seconds; ``POST /file/{id}/confirm`` then checks them."""
        body = dict(ctx.body or {})
        size, digest = body.pop("size"), body.pop("sha256", None)
        limit = self.max_bytes
        if size > limit:
            raise PayloadTooLarge(N_("size: larger than %(limit)s bytes", limit=limit),
                                  errors={"size": N_("larger than %(limit)s bytes", limit=limit)})
        data = self._values(ctx, body)
        key = new_key()
        meta = {"size": size, "sha256": digest, "content_type": "application/octet-stream",
                "storage_key": key, "state": PENDING}
        record = self._insert_file(ctx, data, meta)
        ttl = self.services.settings.file_url_ttl
        expires = int(time.time()) + ttl
        upload = self.storage.presign_put(key, "application/octet-stream", ttl) or {
            "url": self._signed_path(record, "put", expires), "method": "PUT",
            "headers": {"Content-Type": "application/octet-stream"}}
        upload["expires"] = iso_utc(expires)
        return Reply({"file": {"id": record.id, **self.serialize(ctx, record)},
                      "upload": upload}, 201, {"Location": self._path(record)})

    def confirm(self, ctx: RequestContext) -> Reply:
        """``POST /file/{id}/confirm``: the stored object must be there, of the declared
        size (and sha256, if one was declared) and of an allowed type; else 409 and the
        object is deleted (the record stays pending)."""
        record = self._load(ctx, ctx.params["id"], for_update=True)
        self.authorize(ctx, "u", record)
        if record.state != PENDING:
            raise Conflict(N_("%(resource)s %(id)s is not waiting for an upload",
                              resource=self.resource.name, id=record.id))
        info = self.storage.info(record.storage_key)
        if info is None:
            raise Conflict(N_("nothing was uploaded for this file"),
                           errors={self.field: N_("not uploaded")})
        wrong = None
        if info.size != record.size:
            wrong = N_("%(stored)s bytes stored, %(size)s declared", stored=info.size,
                       size=record.size)
        elif record.sha256 and not hmac.compare_digest(info.sha256, record.sha256):
            wrong = N_("sha256 differs from the one declared")
        if wrong:
            self._drop_after_commit(ctx, record.storage_key)
            raise Conflict(N_("%(field)s: the stored file does not match: %(wrong)s",
                              field=self.field, wrong=wrong),
                           errors={self.field: wrong})
        ctype = sniff.detect(info.head)
        if not self.type_allowed(ctype):
            self._drop_after_commit(ctx, record.storage_key)
            raise UnsupportedMediaType(N_("%(field)s: %(ctype)s files are not accepted",
                                          field=self.field, ctype=ctype),
                                       errors={self.field: N_("%(ctype)s is not accepted",
                                                              ctype=ctype)})
        record.content_type, record.sha256, record.state = ctype, info.sha256, READY
        self._flush(ctx)
        self._after_stored(ctx, record)
        return Reply(self.serialize(ctx, record), 200, {"ETag": self.etag(record)})

    def _delete_on_rollback(self, ctx: RequestContext, key: str) -> None:
        storage = self.storage
        ctx.on_rollback.append(lambda: storage.delete(key))

    def _drop_after_commit(self, ctx: RequestContext, key: str) -> None:
        # the refusal rolls the request back; the object goes at once, whatever happens
        try:
            self.storage.delete(key)
        except Exception:
            log.warning("cannot delete refused upload", exc_info=True)

    def signed_upload(self, ctx: RequestContext) -> Reply:
        """``PUT /file/{id}/signed``: the bytes of a direct upload to local storage, at
        most the declared size, through the URL ``create_direct`` signed."""
        record = self._signed_record(ctx, "put")
        if record.state != PENDING:
            raise Conflict(N_("this file is not waiting for an upload"))
        upload = ctx.upload
        writer = self.storage.writer(record.storage_key)
        try:
            for chunk in upload.chunks():
                writer.write(chunk)
                if writer.size > record.size:
                    raise PayloadTooLarge(N_("more than the %(size)s bytes declared",
                                             size=record.size))
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        return Reply(None, 204)

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        if "name" in changes:
            changes["name"] = sniff.safe_name(changes["name"])
        return changes

    def _after_stored(self, ctx: RequestContext, record: Any) -> None:
        """Hand a stored picture to the worker (thumbnail, location) after commit
        (setting ``file_pictures``); a broker that is down costs the thumbnail only."""
        settings = self.services.settings
        outbox = self.services.outbox
        if not settings.file_pictures or outbox is None or \
                record.content_type not in PICTURE_TYPES:
            return
        args = [self.resource.name, record.id]
        ctx.after_commit.append(lambda: outbox.celery.send_task(
            TASK_PICTURE, args=args, queue=settings.worker_queue))

    # -- reading ----------------------------------------------------------------------
    def _path(self, record: Any, tail: str = "") -> str:
        return f"{self.services.base_url}/{self.resource.name}/{record.id}{tail}"

    def serialize(self, ctx: RequestContext, record: Any) -> dict[str, Any]:
        out = super().serialize(ctx, record)
        if self.field in self.resource.computed:
            out[self.field] = self._path(record, "/content") if record.state == READY \
                else None
        if "thumbnail" in self.resource.computed:
            out["thumbnail"] = self._path(record, "/thumbnail") if record.thumbnail_key \
                else None
        return out

    def _stream(self, key: str, name: str, ctype: str, size: int | None,
                etag: str | None = None) -> Reply:
        chunks = self.storage.read(key)
        try:
            first = next(chunks, b"")
        except FileNotFoundError:
            log.error("stored bytes of a file are missing", extra={"event": "file_missing"})
            raise NotFound(N_("the file's content is missing")) from None

        def body() -> Iterator[bytes]:
            try:
                if first:
                    yield first
                yield from chunks
            finally:
                chunks.close()

        headers = {"Content-Type": sniff.served_type(ctype),
                   "Content-Disposition": sniff.disposition(name), **DOWNLOAD_HEADERS}
        if size is not None:
            headers["Content-Length"] = str(size)
        if etag:
            headers["ETag"] = f'"{etag}"'
        return Reply(body(), 200, headers)

    def _ready(self, ctx: RequestContext) -> Any:
        record = self._load(ctx, ctx.params["id"])
        if record.state != READY:
            raise Conflict(N_("%(resource)s %(id)s: the upload is not confirmed",
                              resource=self.resource.name, id=record.id))
        return record

    def download(self, ctx: RequestContext) -> Reply:
        """``GET /file/{id}/content``: the bytes, if the caller may read the record."""
        record = self._ready(ctx)
        return self._stream(record.storage_key, record.name, record.content_type,
                            record.size, record.sha256)

    def thumbnail(self, ctx: RequestContext) -> Reply:
        """``GET /file/{id}/thumbnail``: the picture's thumbnail (JPEG), once made."""
        record = self._ready(ctx)
        if not record.thumbnail_key:
            raise NotFound(N_("no thumbnail (yet)"))
        stem = record.name.rsplit(".", 1)[0] or "thumbnail"
        return self._stream(record.thumbnail_key, f"{stem}.thumbnail.jpg", "image/jpeg", None)

    def url(self, ctx: RequestContext) -> Reply:
        """``GET /file/{id}/url``: a URL that downloads the file without credentials for
        ``file_download_ttl`` seconds (the storage's own presigned URL where it has
        them). Only a live file gets one. A URL once issued cannot be revoked: apicrud's
        own (local storage) die with the file, as :meth:`_signed_record` checks the record
        at every use, but the storage serves its presigned URLs by itself until they
        expire, whatever happens to the file: hence a short lifetime."""
        record = self._ready(ctx)
        ttl = self.services.settings.file_download_ttl
        expires = int(time.time()) + ttl
        url = self.storage.presign_get(record.storage_key, record.name,
                                       sniff.served_type(record.content_type), ttl) or \
            self._signed_path(record, "get", expires)
        return Reply({"url": url, "expires": iso_utc(expires)}, 200)

    def signed_download(self, ctx: RequestContext) -> Reply:
        """``GET /file/{id}/signed``: the bytes, for a URL from :meth:`url`."""
        record = self._signed_record(ctx, "get")
        if record.state != READY:
            raise Forbidden(N_("this link is invalid or has expired"))
        return self._stream(record.storage_key, record.name, record.content_type,
                            record.size, record.sha256)

    # -- signed URLs ------------------------------------------------------------------
    def _signature(self, record_id: str, key: str, method: str, expires: int) -> str:
        message = f"{method}\n{self.resource.name}\n{record_id}\n{key}\n{expires}".encode()
        return hmac.new(self.url_key, message, hashlib.sha256).hexdigest()

    def _signed_path(self, record: Any, method: str, expires: int) -> str:
        sig = self._signature(record.id, record.storage_key, method, expires)
        return f"{self._path(record, '/signed')}?expires={expires}&signature={sig}"

    def _signed_record(self, ctx: RequestContext, method: str) -> Any:
        """The live record a signed URL names; 403 for any bad, stale or foreign
        signature, whether the record exists or not (no existence leak)."""
        refused = Forbidden(N_("this link is invalid or has expired"))
        expires, given = ctx.params["expires"], ctx.params["signature"]
        settings = self.services.settings
        ttl = settings.file_download_ttl if method == "get" else settings.file_url_ttl
        now = int(time.time())
        if not now <= expires <= now + ttl:
            raise refused
        record = self.records.get_live(ctx.db, str(ctx.params["id"]))
        key = record.storage_key if record is not None else "-"
        expected = self._signature(str(ctx.params["id"]), key, method, expires)
        if not hmac.compare_digest(expected, str(given)) or record is None:
            raise refused
        return record

    # -- purge ------------------------------------------------------------------------
    @classmethod
    def before_purge(cls, services: Services | Offline, record: Any,
                     after_commit: list[Callable[[], Any]]) -> None:
        """The record is deleted for good: its object (and thumbnail) go once that is
        committed."""
        keys = [k for k in (record.storage_key, record.thumbnail_key) if k]
        storage = storage_for(services)

        def drop() -> None:
            for key in keys:
                storage.delete(key)

        after_commit.append(drop)


__all__ = ["FileController", "storage_for", "STORAGE_GRANT"]
