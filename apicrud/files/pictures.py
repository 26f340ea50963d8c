"""Pictures: thumbnails and location stripping, done by the worker after an upload.

For a stored image the worker (task ``apicrud.file_picture``) reads the original once,
writes a JPEG thumbnail (no metadata at all), and, unless the owner asked to keep it
(``keep_location``), rewrites the original without its EXIF GPS block: the record then
points at the new object (size and sha256 updated) and the old object is deleted.
Images larger than ``MAX_PIXELS`` are left alone (a decompression bomb costs nothing).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from typing import TYPE_CHECKING, Any

from apicrud.db.repository import Repository
from apicrud.files.models import READY
from apicrud.files.storage import Storage, new_key, storage_for

if TYPE_CHECKING:
    from tempfile import SpooledTemporaryFile

    from celery import Celery

    from apicrud.config import Settings
    from apicrud.services import Offline

log = logging.getLogger("apicrud.files")

TASK_PICTURE = "apicrud.file_picture"
#: detected types the worker makes thumbnails of
PICTURE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp",
                           "image/bmp", "image/tiff"})
THUMBNAIL_SIZE = (256, 256)
MAX_PIXELS = 50_000_000
GPS_IFD = 0x8825
#: formats Pillow can write back with their EXIF (others have no location to strip)
EXIF_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                "TIFF": "image/tiff"}


def _spool(storage: Storage, key: str) -> SpooledTemporaryFile[bytes]:
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115  the caller's
    for chunk in storage.read(key):
        spool.write(chunk)
    spool.seek(0)
    return spool


def _store(storage: Storage, data: bytes) -> tuple[str, int, str]:
    key = new_key()
    writer = storage.writer(key)
    try:
        writer.write(data)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return key, len(data), hashlib.sha256(data).hexdigest()


def process(storage: Storage, original_key: str, keep_location: bool) -> dict[str, Any]:
    """Make the thumbnail (and a location-free original); the changes for the record:
    ``thumbnail_key``, and without ``keep_location`` when the picture had a location,
    ``storage_key``, ``size`` and ``sha256`` of the rewritten original."""
    import io

    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    out: dict[str, Any] = {}
    with _spool(storage, original_key) as spool:
        try:
            image = Image.open(spool)  # reads the header only
            if image.width * image.height > MAX_PIXELS:
                log.info("picture left alone: more than %d pixels", MAX_PIXELS,
                         extra={"event": "file_picture_skipped"})
                return out
            image.load()
        except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            log.info("not a picture the worker can read: %s", type(exc).__name__,
                     extra={"event": "file_picture_skipped"})
            return out
        fmt = image.format
        exif = image.getexif()
        if not keep_location and GPS_IFD in exif and fmt in EXIF_FORMATS:
            del exif[GPS_IFD]
            buffer = io.BytesIO()
            options: dict[str, Any] = {"exif": exif.tobytes()}
            if fmt == "JPEG":
                options["quality"] = 95
            image.save(buffer, format=fmt, **options)
            key, size, digest = _store(storage, buffer.getvalue())
            out.update(storage_key=key, size=size, sha256=digest)
        thumb = ImageOps.exif_transpose(image)
        thumb.thumbnail(THUMBNAIL_SIZE)
        if thumb.mode not in ("RGB", "L"):
            thumb = thumb.convert("RGB")
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=85)  # no exif: no metadata at all
        out["thumbnail_key"] = _store(storage, buffer.getvalue())[0]
    return out


def run(services: Offline, resource: str, record_id: str) -> bool:
    """The task's work for one file record; False when there was nothing to do."""
    res = services.resources.get(resource)
    if res is None or res.model is None:
        return False
    model = res.model
    storage = storage_for(services)
    with services.db.session() as session:
        record = Repository(model).get_live(session, record_id)
        if record is None or record.state != READY or record.thumbnail_key:
            return False
        original, keep = record.storage_key, record.keep_location
    changes = process(storage, original, keep)
    if not changes:
        return False
    made = [changes[k] for k in ("thumbnail_key", "storage_key") if k in changes]
    with services.db.session() as session, session.begin():
        record = Repository(model).get_live(session, record_id)
        if record is None or record.storage_key != original:  # changed meanwhile
            for key in made:
                storage.delete(key)
            return False
        for name, value in changes.items():
            setattr(record, name, value)
    if "storage_key" in changes:
        storage.delete(original)
    log.info("picture processed", extra={"event": "file_picture", "record_id": record_id})
    return True


def register(app: Celery, settings: Settings) -> Any:  # the Celery task
    """Register the picture task on a worker's Celery app."""
    state: dict[str, Any] = {}

    def services() -> Offline:
        if "services" not in state:
            from apicrud.services import open_offline

            state["services"] = open_offline(settings, declarations=True, pool_size=2)
        return state["services"]

    @app.task(name=TASK_PICTURE, acks_late=True, ignore_result=True, shared=False)
    def file_picture(resource: str, record_id: str) -> None:
        run(services(), resource, record_id)

    return file_picture
