"""Read a ``multipart/form-data`` request body as it arrives: form fields, then one file.

The file part's bytes are handed on chunk by chunk (:meth:`FilePart.chunks`), so a
file of any size passes through a few chunks of memory on its way to storage. Form
fields are small (``FIELD_MAX`` bytes each, ``PARTS_MAX`` parts) and must come before
the file part, as browsers and HTTP clients send them in form order (S3's POST uploads
have the same rule): the record's values are known, and checked, before a byte of the
file is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Event,
    Field,
    File,
    MultipartDecoder,
    NeedData,
)
from werkzeug.wsgi import get_input_stream

from apicrud.errors import BadRequest, PayloadTooLarge, ValidationProblem
from apicrud.i18n import N_, N_as

if TYPE_CHECKING:
    from apicrud.config import Settings

CHUNK = 64 * 1024
FIELD_MAX = 16 * 1024
PARTS_MAX = 32
MULTIPART = "multipart/form-data"


def read_chunk(stream: IO[bytes]) -> bytes:
    """The next chunk of a request body; 400 when its framing is broken (a bad chunk
    header), as the server reports it while reading."""
    try:
        return stream.read(CHUNK)
    except (OSError, ValueError):
        raise BadRequest(N_("the request body is malformed or cut off"),
                         errors={"body": N_("malformed or cut off")}) from None


def is_multipart(content_type: str | None) -> bool:
    """Whether a Content-Type header names a multipart/form-data body."""
    return parse_options_header(content_type or "")[0].lower() == MULTIPART


class FilePart:
    """The file part of a form: its field name, the client's file name and type (both
    only claims), and its bytes, read on demand."""

    size: int | None = None  # unknown until read

    def __init__(self, upload: MultipartUpload, name: str, filename: str,
                 declared_type: str) -> None:
        self.upload = upload
        self.name = name
        self.filename = filename
        self.declared_type = declared_type

    def chunks(self) -> Iterator[bytes]:
        """The part's bytes, as they arrive."""
        return self.upload._file_data()


class MultipartUpload:
    """One multipart/form-data body, parsed from the WSGI input stream."""

    typed = False  # its fields are text (see coerce_fields)

    def __init__(self, environ: dict[str, Any], body_max: int) -> None:
        ctype, options = parse_options_header(environ.get("CONTENT_TYPE", ""))
        boundary = options.get("boundary", "")
        if ctype.lower() != MULTIPART or not boundary or len(boundary) > 200:
            raise BadRequest(N_("multipart/form-data needs a boundary"),
                             errors={"body": N_("no multipart boundary")})
        length = environ.get("CONTENT_LENGTH")
        try:
            self.declared = int(length) if length else None
        except ValueError:
            raise BadRequest(N_("Content-Length is not a number")) from None
        self.body_max = body_max
        if self.declared is not None and self.declared > body_max:
            raise PayloadTooLarge(N_("request body is larger than %(limit)s bytes", limit=body_max))
        self.stream = get_input_stream(environ, max_content_length=None)
        self.boundary = boundary.encode("latin-1")
        self.decoder = MultipartDecoder(self.boundary, max_parts=PARTS_MAX)
        self.received = 0
        self._done = False
        self._in_file = False

    def least_remaining(self) -> int:
        """The fewest bytes the file part can still hold, going by the declared length
        (0 without one): what is left to read, less the closing boundary. What was read
        but not yet handed on only makes this smaller, so it never overstates a file."""
        if self.declared is None:
            return 0
        return max(0, self.declared - self.received - len(self.boundary) - 8)

    # -- reading ---------------------------------------------------------------------
    def _event(self) -> Event:
        while True:
            event = self.decoder.next_event()
            if not isinstance(event, NeedData):
                return event
            if self._done:
                raise BadRequest(N_("multipart body ends before its closing boundary"),
                                 errors={"body": N_("incomplete multipart body")})
            data = read_chunk(self.stream)
            self.received += len(data)
            if self.received > self.body_max:
                raise PayloadTooLarge(N_("request body is larger than %(limit)s bytes",
                                         limit=self.body_max))
            if not data:
                self._done = True
                self.decoder.receive_data(None)
            else:
                self.decoder.receive_data(data)

    def _next(self) -> Event:
        try:
            return self._event()
        except ValueError as exc:  # the decoder's word for a malformed body
            english = f"malformed multipart body: {exc}"[:200]  # the decoder's own words
            raise BadRequest(N_as(english, "malformed multipart body: %(problem)s",
                                  problem=str(exc)[:160]),
                             errors={"body": N_("malformed multipart body")}) from None

    def fields_and_file(self) -> tuple[dict[str, str], FilePart | None]:
        """The form fields before the first file part, and that part (None: no file)."""
        fields: dict[str, str] = {}
        current: str | None = None
        buffer = bytearray()
        while True:
            event = self._next()
            if isinstance(event, File):
                self._finish_field(fields, current, buffer)
                ctype = parse_options_header(event.headers.get("Content-Type", ""))[0]
                self._in_file = True
                return fields, FilePart(self, event.name, event.filename or "", ctype)
            if isinstance(event, Field):
                self._finish_field(fields, current, buffer)
                current, buffer = event.name, bytearray()
                if current in fields:
                    raise ValidationProblem({current[:64]: N_("given more than once")})
            elif isinstance(event, Data):
                buffer += event.data
                if len(buffer) > FIELD_MAX:
                    raise ValidationProblem({(current or "body")[:64]:
                                             N_("longer than %(limit)s bytes", limit=FIELD_MAX)})
            elif isinstance(event, Epilogue):
                self._finish_field(fields, current, buffer)
                return fields, None

    @staticmethod
    def _finish_field(fields: dict[str, str], name: str | None, buffer: bytearray) -> None:
        if name is None:
            return
        try:
            text = buffer.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationProblem({name[:64]: N_("is not UTF-8 text")}) from None
        if "\x00" in text:
            raise ValidationProblem({name[:64]: N_("contains a NUL character")})
        fields[name] = text

    def _file_data(self) -> Iterator[bytes]:
        if not self._in_file:
            return
        while True:
            event = self._next()
            if not isinstance(event, Data):
                raise BadRequest(N_("malformed multipart body"), errors={"body": N_("malformed")})
            if event.data:
                yield event.data
            if not event.more_data:
                self._in_file = False
                return

    def finish(self) -> None:
        """Read to the end of the body: the file part must be the last part."""
        while True:
            event = self._next()
            if isinstance(event, Epilogue):
                return
            if isinstance(event, (Field, File)):
                raise BadRequest(N_("the file must be the last part of the form (send the other "
                                    "fields first)"),
                                 errors={event.name[:64]: N_("after the file part")})


def coerce_fields(fields: dict[str, str], schema: dict[str, Any]) -> dict[str, Any]:
    """Form values (text) as the types the operation's multipart schema gives them;
    fields of ``format: binary`` are left out (they are the file)."""
    props = schema.get("properties") or {}
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, raw in fields.items():
        prop = props.get(name)
        if prop is None:
            out[name] = raw  # unknown: the validator names it
            continue
        types = prop.get("type", "string")
        types = types if isinstance(types, list) else [types]
        if raw == "" and "null" in types:
            out[name] = None
        elif "boolean" in types and raw.lower() in ("true", "false", "1", "0", "on", "off"):
            out[name] = raw.lower() in ("true", "1", "on")
        elif "integer" in types:
            try:
                out[name] = int(raw)
            except ValueError:
                errors[name] = N_("is not an integer")
        else:
            out[name] = raw
    if errors:
        raise ValidationProblem(errors)
    return out


#: room for the form's other fields and part headers beyond the largest file
FORM_OVERHEAD = 1024 * 1024


def open_upload(environ: dict[str, Any], settings: Settings) -> MultipartUpload:
    """The request's multipart body, ready to be read (415 when it is not one)."""
    from apicrud.errors import UnsupportedMediaType

    if not is_multipart(environ.get("CONTENT_TYPE")):
        raise UnsupportedMediaType(N_("send multipart/form-data"))
    return MultipartUpload(environ, settings.file_max_bytes + FORM_OVERHEAD)


class RawUpload:
    """A request body of raw bytes (a direct upload), read in chunks."""

    def __init__(self, environ: dict[str, Any], body_max: int) -> None:
        length = environ.get("CONTENT_LENGTH")
        try:
            self.declared = int(length) if length else None
        except ValueError:
            raise BadRequest(N_("Content-Length is not a number")) from None
        if self.declared is not None and self.declared > body_max:
            raise PayloadTooLarge(N_("request body is larger than %(limit)s bytes", limit=body_max))
        self.body_max = body_max
        self.stream = get_input_stream(environ, max_content_length=None)

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes as they arrive (413 past ``body_max``)."""
        received = 0
        while True:
            data = read_chunk(self.stream)
            if not data:
                return
            received += len(data)
            if received > self.body_max:
                raise PayloadTooLarge(N_("request body is larger than %(limit)s bytes",
                                         limit=self.body_max))
            yield data


def open_raw(environ: dict[str, Any], settings: Settings) -> RawUpload:
    """The request's body as raw bytes, at most ``file_max_bytes``."""
    return RawUpload(environ, settings.file_max_bytes)
