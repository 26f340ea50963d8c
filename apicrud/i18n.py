"""Server messages in the user's language: gettext catalogs (Babel), chosen per request.

Texts are written in English and marked where they are made: ``N_("%(field)s: is
required", field=name)`` returns a :class:`Msg`, a ``str`` that reads as the English
text (so logs, comparisons and string operations are unchanged) and also carries its
message id and parameters. Parameters stay out of the message id, so one translation
serves every value. Nothing is translated when a text is made: a problem document
(:meth:`apicrud.errors.Problem.render`) and a mail (:mod:`apicrud.messaging.render`)
translate at render time, into the locale of the request (:func:`choose_locale`).

Catalogs live in ``apicrud/locale/<lang>/LC_MESSAGES/apicrud.po``; their compiled
``.mo`` files are committed next to them (``make messages`` extracts, updates and
compiles; ``tests/unit/test_catalogs.py`` fails when a ``.mo`` does not match its ``.po``
or a message id has no translation). English is the source language: it needs no
catalog. :func:`translations` loads each catalog once per process.
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path
from typing import Any

__all__ = ["Msg", "N_", "NP_", "N_as", "joined", "text_of", "LOCALE_DIR", "DOMAIN",
           "SOURCE_LANGUAGE", "available", "translations", "translate", "language_of",
           "negotiate", "choose_locale"]

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "apicrud"
SOURCE_LANGUAGE = "en"


class Msg(str):
    """An English text that remembers its message id and parameters for translation."""

    __slots__ = ("msgid", "n", "params", "plural")
    msgid: str
    params: dict[str, Any]
    plural: str | None
    n: int

    def __new__(cls, msgid: str, params: dict[str, Any], plural: str | None = None,
                n: int = 1, english: str | None = None) -> Msg:
        if english is None:  # else the English text is given (a library's own words)
            english = plural if plural is not None and n != 1 else msgid
            english = english % params if params else english
        self = super().__new__(cls, english)
        self.msgid, self.params, self.plural, self.n = msgid, params, plural, n
        return self

    def translated(self, trans: gettext.NullTranslations) -> str:
        if self.plural is None:
            text = trans.gettext(self.msgid)
        else:
            text = trans.ngettext(self.msgid, self.plural, self.n)
        if not self.params:
            return text
        params = {k: translate(v, trans) for k, v in self.params.items()}
        try:
            return text % params
        except (KeyError, ValueError, TypeError):  # a broken translation: the English stands
            return str(self)


def N_(msgid: str, /, **params: Any) -> Msg:  # noqa: N802 (the gettext convention)
    """Mark ``msgid`` for translation; ``params`` fill its ``%(name)s`` placeholders."""
    return Msg(msgid, params)


def N_as(english: str, msgid: str, /, **params: Any) -> Msg:  # noqa: N802
    """A text whose English words are given (``english``, e.g. a validator's message)
    and whose translations are those of ``msgid`` filled with ``params``."""
    return Msg(msgid, params, english=english)


def NP_(singular: str, plural: str, n: int, /, **params: Any) -> Msg:  # noqa: N802
    """Mark a text with a plural form; ``n`` chooses the form (gettext's ngettext)."""
    return Msg(singular, params, plural, n)


def text_of(exc: BaseException) -> str:
    """The marked text an exception was raised with (``ValueError(N_(...))``), so that
    it can be translated where it is shown; else the exception's ``str``."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, Msg) else str(exc)


def joined(parts: list[str], sep: str = "; ") -> str:
    """``parts`` joined by ``sep``; each part translated with the whole."""
    if not any(isinstance(p, Msg) for p in parts):
        return sep.join(parts)
    msgid = sep.join(f"%(p{i})s" for i in range(len(parts)))  # in no catalog: kept as is
    return Msg(msgid, {f"p{i}": part for i, part in enumerate(parts)})


def translate(value: Any, trans: gettext.NullTranslations | None) -> Any:
    """``value`` in the catalog's language when it is a :class:`Msg`; else as it is."""
    if trans is None or not isinstance(value, Msg):
        return value
    return value.translated(trans)


@functools.cache
def available() -> frozenset[str]:
    """The languages with a compiled catalog, plus English."""
    found = {p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")}
    return frozenset(found | {SOURCE_LANGUAGE})


@functools.cache
def translations(language: str) -> gettext.NullTranslations | None:
    """The catalog of ``language`` (loaded once); ``None`` for English or no catalog."""
    if language == SOURCE_LANGUAGE or language not in available():
        return None
    with open(LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo", "rb") as fh:
        return gettext.GNUTranslations(fh)


@functools.lru_cache(maxsize=256)
def language_of(tag: str | None) -> str | None:
    """The shipped language for a locale or language tag (``de_CH``, ``de-ch``, ``DE``
    -> ``de``), or ``None`` when none is shipped."""
    if not tag:
        return None
    tag = tag.strip().replace("-", "_")
    shipped = available()
    if tag in shipped:
        return tag
    primary = tag.partition("_")[0].lower()
    return primary if primary in shipped else None


def negotiate(accept_language: str | None) -> str | None:
    """The best shipped language of an ``Accept-Language`` header (q-values respected,
    ``q=0`` refused, region tags fall back to their language), or ``None``."""
    if not accept_language:
        return None
    if len(accept_language) > 512:  # no client needs more: cut, so cache entries stay small
        accept_language = accept_language[:512]
    return _negotiate(accept_language)


@functools.lru_cache(maxsize=512)  # clients send the same few headers again and again
def _negotiate(accept_language: str) -> str | None:
    ranked: list[tuple[float, int, str]] = []
    for pos, part in enumerate(accept_language.split(",")[:32]):
        tag, _, rest = part.strip().partition(";")
        q = 1.0
        for param in rest.split(";"):
            key, _, val = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        if tag and tag != "*" and q > 0:
            ranked.append((-q, pos, tag))
    for _q, _pos, tag in sorted(ranked):
        found = language_of(tag)
        if found:
            return found
    return None


def choose_locale(account_locale: str | None, accept_language: str | None,
                  default: str) -> str:
    """The account's locale when it is shipped, else the best of ``Accept-Language``,
    else ``default`` (itself English when not shipped)."""
    return language_of(account_locale) or negotiate(accept_language) or \
        language_of(default) or SOURCE_LANGUAGE
