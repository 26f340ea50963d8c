"""A file sent inside a JSON body as a base64 ``data:`` URL (react-admin's recipe).

react-admin's ``FileInput``/``ImageInput`` give a form value ``{rawFile, src, title}``;
its documented way to send that as JSON is to replace ``src`` with the file read as a
data URL::

    {"content": {"src": "data:image/png;base64,iVBOR...", "title": "dot.png"},
     "privacy": "member", ...}

:class:`DataUrlUpload` offers what :class:`~apicrud.files.upload.MultipartUpload` offers
(``fields_and_file``, ``least_remaining``, ``finish``) so the file controller takes both
alike: the same checks before a byte is stored, the same streaming to storage, the same
limit, type detection and grants. The body is read up to what the largest file takes in
base64 (413 past it, declared or streamed); the base64 text is decoded a slice at a time
as it goes to storage, so the limit is enforced while decoding. The media type the data
URL names is only a claim: the type is detected from the bytes, as for any upload.
"""

from __future__ import annotations

import binascii
import json
import re
from base64 import b64decode
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from werkzeug.wsgi import get_input_stream

from apicrud.errors import BadRequest, PayloadTooLarge, ValidationProblem
from apicrud.files.upload import FORM_OVERHEAD, read_chunk
from apicrud.i18n import N_

if TYPE_CHECKING:
    from apicrud.config import Settings
    from apicrud.spec.operations import Operation

#: base64 characters decoded at once (a multiple of 4: 192 KiB of file)
SLICE = 256 * 1024
_HEADER = re.compile(r"data:([a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)?((?:;[^;,]{1,100}){0,8}),",
                     re.IGNORECASE)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def is_json(content_type: str | None) -> bool:
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


def base64_limit(max_bytes: int) -> int:
    """The largest body that can carry a file of ``max_bytes`` as base64, with room for
    the form's other fields."""
    return (max_bytes + 2) // 3 * 4 + FORM_OVERHEAD


class DataUrlPart:
    """The file of a JSON body: field name, the client's file name, its claimed type,
    and its bytes, decoded as they are asked for."""

    def __init__(self, name: str, filename: str, declared_type: str, text: str) -> None:
        self.name = name
        self.filename = filename
        self.declared_type = declared_type
        self.text = text
        padding = len(text) - len(text.rstrip("="))
        self.size = len(text) // 4 * 3 - padding  # exact, before decoding

    def chunks(self) -> Iterator[bytes]:
        text = self.text
        for start in range(0, len(text), SLICE):
            try:
                yield b64decode(text[start:start + SLICE], validate=True)
            except (binascii.Error, ValueError):
                raise ValidationProblem({self.name: N_("is not valid base64")}) from None


class DataUrlUpload:
    """A JSON body with one file field given as ``{"src": "data:...", "title": ...}``."""

    typed = True  # the other fields are JSON values, not form text
    declared = None  # the file's size is known exactly: see DataUrlPart.size

    def __init__(self, environ: dict[str, Any], max_bytes: int,
                 file_fields: tuple[str, ...]) -> None:
        limit = base64_limit(max_bytes)
        length = environ.get("CONTENT_LENGTH")
        try:
            declared = int(length) if length else None
        except ValueError:
            raise BadRequest(N_("Content-Length is not a number")) from None
        if declared is not None and declared > limit:
            raise PayloadTooLarge(N_("request body is larger than %(limit)s bytes", limit=limit))
        stream = get_input_stream(environ, max_content_length=None)
        raw, received = bytearray(), 0
        while True:
            data = read_chunk(stream)
            if not data:
                break
            received += len(data)
            if received > limit:
                raise PayloadTooLarge(N_("request body is larger than %(limit)s bytes",
                                         limit=limit))
            raw += data
        try:
            body = json.loads(bytes(raw))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadRequest(N_("malformed JSON"), errors={"body": N_("malformed JSON")}) from None
        del raw
        if not isinstance(body, dict):
            raise BadRequest(N_("the body must be a JSON object"),
                             errors={"body": N_("must be a JSON object")})
        self.body = body
        self.file_fields = file_fields

    def least_remaining(self) -> int:
        return 0

    def fields_and_file(self) -> tuple[dict[str, Any], DataUrlPart | None]:
        fields = dict(self.body)
        part = None
        for name in self.file_fields:
            if name in fields:
                part = _part(name, fields.pop(name))
                break
        return fields, part

    def finish(self) -> None:
        """Nothing follows the file in a JSON body."""


def _part(name: str, value: Any) -> DataUrlPart | None:
    if value is None:
        return None
    src: Any
    if isinstance(value, str):
        src, title = value, ""
    elif isinstance(value, dict):
        src, title = value.get("src"), value.get("title") or ""
        if not isinstance(title, str):
            raise ValidationProblem({f"{name}.title": N_("must be a string")})
    else:
        raise ValidationProblem({name: N_('must be {"src": "data:<type>;base64,...", '
                                          '"title": "<file name>"}')})
    if not isinstance(src, str) or not src:
        raise ValidationProblem({name: N_("src is required: the file as a base64 data: URL")})
    if src.startswith("blob:"):
        raise ValidationProblem({name: N_("src is a blob: URL, which only the browser can read: "
                                          "send the file as a base64 data: URL or as "
                                          "multipart/form-data")})
    header = _HEADER.match(src[:1024])
    if header is None:
        raise ValidationProblem({name: N_("src is not a data: URL")})
    params = [p.strip().lower() for p in header.group(2).split(";") if p.strip()]
    if "base64" not in params:
        raise ValidationProblem({name: N_("src must be a base64 data: URL (;base64,)")})
    text = src[header.end():]
    if len(text) % 4 or not _BASE64.fullmatch(text[-4:] if text else ""):
        raise ValidationProblem({name: N_("is not valid base64")})
    return DataUrlPart(name, title, (header.group(1) or "").lower(), text)


def open_data_url(environ: dict[str, Any], settings: Settings, op: Operation) -> DataUrlUpload:
    """The request's JSON body with its file as a data URL, at most ``file_max_bytes``
    of file (a field's ``x-max-bytes`` narrows it, in the controller)."""
    from apicrud.spec.operations import is_file_schema

    props = (op.multipart_schema or {}).get("properties") or {}
    fields = tuple(name for name, prop in props.items() if is_file_schema(prop))
    return DataUrlUpload(environ, settings.file_max_bytes, fields)
