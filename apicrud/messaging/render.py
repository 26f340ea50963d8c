"""Render a message from a Jinja2 text template.

A template is ``<name>.txt``: a first line ``Subject: ...``, a blank line, then the
body. Templates are looked up in the given folders first, then in the shipped
``templates/`` folder, so an application can replace any of them. Undefined values are
an error (StrictUndefined): a message never goes out with a hole in it. Values come
from users (names), so they are data, never template code; the subject is folded onto
one line so no value can add a mail header.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["Rendered", "MessageRenderer", "TEMPLATE_DIR", "duration_text"]

TEMPLATE_DIR = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class Rendered:
    """A rendered message: one-line subject and plain-text body."""

    subject: str
    body: str


class MessageRenderer:
    """Renders ``<name>.txt`` templates into :class:`Rendered` messages."""

    def __init__(self, search_path: Sequence[str | os.PathLike[str]] = ()) -> None:
        """``search_path``: folders searched before the shipped templates."""
        loader = jinja2.FileSystemLoader([*map(str, search_path), str(TEMPLATE_DIR)])
        # ``.txt`` templates make text/plain messages: HTML escaping would garble them
        # (``&`` -> ``&amp;``). Should an HTML template ever be added, it is escaped.
        self.env = jinja2.Environment(
            loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm", "xml"),
                                                default_for_string=False, default=False))

    def render(self, name: str, /, **context: Any) -> Rendered:
        """Render template ``name``; raise ``jinja2.TemplateError`` if it is broken."""
        text = self.env.get_template(f"{name}.txt").render(**context)
        head, _, body = text.partition("\n\n")
        if not head.lower().startswith("subject:"):
            raise jinja2.TemplateError(f"template {name}.txt does not start with 'Subject:'")
        # everything up to the blank line is the subject, folded onto one line
        subject = " ".join(head[len("subject:"):].split())
        return Rendered(subject=subject, body=body.strip("\n") + "\n")


def duration_text(seconds: int) -> str:
    """``90000`` -> ``"25 hours"``: the largest unit that keeps a whole number."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
