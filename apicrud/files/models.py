"""The columns every file record has (an application adds owner, privacy, memberships)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

#: a file's upload state: ``pending`` until a direct upload is confirmed, then ``ready``
PENDING, READY = "pending", "ready"


class FileMixin:
    """Name, size, detected type, hash and storage key of an uploaded file."""

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False,
                                              default="application/octet-stream")
    sha256: Mapped[str | None] = mapped_column(String(64))
    #: where storage keeps the bytes: random, never shown to clients
    storage_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    #: ``pending`` (a direct upload not yet confirmed) or ``ready``
    state: Mapped[str] = mapped_column(String(8), nullable=False, default=READY)
    #: keep the location an image carries (EXIF GPS); else the worker removes it
    keep_location: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    #: storage key of the picture's thumbnail (made by the worker), if any
    thumbnail_key: Mapped[str | None] = mapped_column(String(64))
