"""Render a message from a Jinja2 text template.

A template is ``<name>.txt``: a first line ``Subject: ...``, a blank line, then the
body. Templates are looked up in the given folders first, then in the shipped
``templates/`` folder, so an application can replace any of them. Undefined values are
an error (StrictUndefined): a message never goes out with a hole in it. Values come
from users (names), so they are data, never template code; the subject is folded onto
one line so no value can add a mail header.

Messages come in the recipient's language: the shipped templates mark their texts with
``{% trans %}`` blocks (Jinja2's i18n extension), translated from the gettext catalogs
of :mod:`apicrud.i18n`; values that are marked texts (``N_``, ``NP_``, e.g.
:func:`duration_text`) are translated too. One Jinja2 environment per language.
"""

from __future__ import annotations

import gettext
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from apicrud.i18n import NP_, SOURCE_LANGUAGE, translate, translations

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
        self._loader = jinja2.FileSystemLoader([*map(str, search_path), str(TEMPLATE_DIR)])
        self._envs: dict[str, jinja2.Environment] = {}
        self._lock = threading.Lock()
        self.env = self._env(SOURCE_LANGUAGE)

    def _env(self, language: str) -> jinja2.Environment:
        env = self._envs.get(language)
        if env is None:
            with self._lock:
                env = self._envs.get(language)
                if env is None:
                    # ``.txt`` templates make text/plain messages: HTML escaping would
                    # garble them (``&`` -> ``&amp;``). An HTML template would be escaped.
                    env = jinja2.Environment(
                        loader=self._loader, undefined=jinja2.StrictUndefined,
                        keep_trailing_newline=True, extensions=["jinja2.ext.i18n"],
                        autoescape=jinja2.select_autoescape(
                            enabled_extensions=("html", "htm", "xml"),
                            default_for_string=False, default=False))
                    env.install_gettext_translations(  # type: ignore[attr-defined]
                        translations(language) or gettext.NullTranslations(), newstyle=True)
                    self._envs[language] = env
        return env

    def render(self, name: str, /, language: str = SOURCE_LANGUAGE,
               **context: Any) -> Rendered:
        """Render template ``name`` in ``language`` (English when no catalog is shipped
        for it); raise ``jinja2.TemplateError`` if it is broken."""
        trans = translations(language)
        if trans is None:
            language = SOURCE_LANGUAGE
        else:
            context = {k: translate(v, trans) for k, v in context.items()}
        text = self._env(language).get_template(f"{name}.txt").render(**context)
        head, _, body = text.partition("\n\n")
        if not head.lower().startswith("subject:"):
            raise jinja2.TemplateError(f"template {name}.txt does not start with 'Subject:'")
        # everything up to the blank line is the subject, folded onto one line
        subject = " ".join(head[len("subject:"):].split())
        return Rendered(subject=subject, body=body.strip("\n") + "\n")


def duration_text(seconds: int) -> str:
    """``90000`` -> ``"25 hours"``: the largest unit that keeps a whole number (a marked
    text: a message renders it in its language)."""
    if seconds >= 86400 and seconds % 86400 == 0:
        count = seconds // 86400
        return NP_("%(count)s day", "%(count)s days", count, count=count)
    if seconds >= 3600 and seconds % 3600 == 0:
        count = seconds // 3600
        return NP_("%(count)s hour", "%(count)s hours", count, count=count)
    if seconds >= 60 and seconds % 60 == 0:
        count = seconds // 60
        return NP_("%(count)s minute", "%(count)s minutes", count, count=count)
    return NP_("%(count)s second", "%(count)s seconds", seconds, count=seconds)
