"""What a file is, judged from its bytes; a safe name and a safe type to serve it with.

The content type a client declares is never trusted: :func:`detect` reads the first
bytes (magic numbers of the common formats, then a look at text). A file that a browser
would run (HTML, SVG, XML, JavaScript) is detected as such whatever its name says, so
the allow list refuses it, and :func:`served_type` never hands such a type back.
"""

from __future__ import annotations

import re
import unicodedata

#: bytes :func:`detect` needs to decide
SNIFF_BYTES = 1024

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"PK\x03\x04", 0, "application/zip"),
    (b"\x1f\x8b", 0, "application/gzip"),
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"ID3", 0, "audio/mpeg"),
    (b"OggS", 0, "audio/ogg"),
    (b"\x00\x00\x01\x00", 0, "image/x-icon"),
)

#: text that makes a browser treat a document as markup or script
_MARKUP = re.compile(rb"<\s*(!doctype\s+html|html|head|body|script|iframe|svg|\?xml|"
                     rb"object|embed|meta|link|style|img|a\s|div|table|form|title)",
                     re.IGNORECASE)

#: types served under their own name; anything else goes out as octet-stream
INLINE_SAFE = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp",
                         "image/bmp", "image/tiff", "image/x-icon", "application/pdf",
                         "application/zip", "application/gzip", "audio/mpeg", "audio/ogg",
                         "video/mp4", "video/webm", "text/plain"})


def detect(head: bytes) -> str:
    """The content type of a file starting with ``head`` (its first SNIFF_BYTES)."""
    for magic, offset, ctype in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return ctype
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    text = head.lstrip(b"\xef\xbb\xbf\xfe\xff\x00 \t\r\n\x0c")
    if _MARKUP.search(text[:SNIFF_BYTES]):
        low = text.lower()
        if b"<svg" in low:
            return "image/svg+xml"
        if low.startswith(b"<?xml") and b"<html" not in low:
            return "application/xml"
        return "text/html"
    if _is_text(head):
        return "text/plain"
    return "application/octet-stream"


def _is_text(head: bytes) -> bool:
    if not head:
        return True
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end
            return False
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return controls * 100 < len(head)


def allowed(ctype: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Whether ``ctype`` matches one of ``patterns`` (``image/png``, ``image/*``, ``*/*``)."""
    major = ctype.split("/", 1)[0]
    return any(p == ctype or p == "*/*" or (p.endswith("/*") and p[:-2] == major)
               for p in patterns)


def served_type(ctype: str) -> str:
    """The Content-Type a download carries: the detected type when no browser would run
    it, else ``application/octet-stream``."""
    if ctype == "text/plain":
        return "text/plain; charset=utf-8"
    return ctype if ctype in INLINE_SAFE else "application/octet-stream"


_UNSAFE = re.compile(r"[^\w.\- ()+,@]+")


def safe_name(name: str | None, fallback: str = "file") -> str:
    """A file name fit to store and to send back: the last path part only (no ``..``,
    no slashes of either kind), printable, no leading dots, at most 200 characters."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = _UNSAFE.sub("_", name).strip(" .")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:200 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 16 \
            else name[:200]
    return name or fallback


def disposition(name: str) -> str:
    """``Content-Disposition: attachment`` naming the file (RFC 6266: an ASCII fallback
    and the UTF-8 name)."""
    from urllib.parse import quote

    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
