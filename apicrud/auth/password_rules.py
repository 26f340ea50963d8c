"""Rules a new password must meet, from settings.

Length bounds follow OWASP ASVS (at least 12 characters by default, up to 128); beyond
that the rules refuse what guessing attacks try first, instead of demanding character
classes (NIST SP 800-63B): the account's own name or address, passwords from a short
shipped list of the most common ones (also with digits or symbols added before or
after), one character or a short pattern repeated, and runs along the alphabet, the
digits or a keyboard row.
"""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from apicrud.errors import ValidationProblem
from apicrud.i18n import N_, joined

if TYPE_CHECKING:
    from apicrud.config import Settings

__all__ = ["PasswordRules"]

COMMON_FILE = Path(__file__).with_name("common_passwords.txt")
_RUNS = ("abcdefghijklmnopqrstuvwxyz", "01234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm",
         "qwertzuiop", "azertyuiop", "qazwsxedcrfvtgbyhnujmikolp", "1qaz2wsx3edc4rfv5tgb")
_AFFIX = "0123456789!@#$%^&*()-_=+.,;:?~ "


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (lower case, one a line, # comments)."""
    with open(COMMON_FILE, encoding="utf-8") as fh:
        return frozenset(line.strip().lower() for line in fh
                         if line.strip() and not line.startswith("#"))


def _is_run(text: str) -> bool:
    """True if each character follows the last along the alphabet, the digits (wrapping
    9 to 0) or a keyboard row, either way: ``abcdef``, ``9876543210987``, ``poiuy``."""
    if len(text) < 4:
        return False
    for run in _RUNS:
        for seq in (run, run[::-1]):
            follows = dict(itertools.pairwise(seq))
            if all(follows.get(a) == b for a, b in itertools.pairwise(text)):
                return True
    return False


def _is_repeat(text: str) -> bool:
    """True if ``text`` is one short piece (up to a third of its length) repeated."""
    n = len(text)
    return any(n % size == 0 and text == text[:size] * (n // size)
               for size in range(1, n // 3 + 1)) or len(set(text)) <= 2


@dataclass(frozen=True)
class PasswordRules:
    """Checks a password chosen by a user; see the module docstring."""

    min_length: int = 12
    max_length: int = 128
    check_common: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordRules:
        return cls(settings.password_min_length, settings.password_max_length,
                   settings.password_check_common)

    def problems(self, password: str, username: str | None = None,
                 email: str | None = None) -> list[str]:
        """Every rule ``password`` breaks, in words meant for the user (empty: fine)."""
        if not isinstance(password, str):
            return [N_("must be text")]
        out: list[str] = []
        length = len(password)
        if length < self.min_length:
            out.append(N_("must have at least %(count)s characters", count=self.min_length))
        if length > self.max_length:
            out.append(N_("must have at most %(count)s characters", count=self.max_length))
            return out  # no point looking for patterns in an oversized value
        folded = unicodedata.normalize("NFKC", password).casefold()
        by_name = N_("must not contain your username")
        by_address = N_("must not contain your email address")
        for problem, value in ((by_name, username), (by_address, email),
                               (by_address, (email or "").partition("@")[0])):
            value = (value or "").casefold()
            if len(value) >= 3 and value in folded:
                out.append(problem)
                break
        if self.check_common and folded:
            stem = folded.strip(_AFFIX)
            if folded in common_passwords() or stem in common_passwords():
                out.append(N_("is too common"))
            elif _is_repeat(folded) or _is_run(folded) or _is_run(stem):
                out.append(N_("is too easy to guess (a repeated pattern or a sequence)"))
        return out

    def check(self, password: str, username: str | None = None, email: str | None = None,
              field: str = "password") -> None:
        """Raise a 400 naming ``field`` unless the password meets every rule."""
        found = self.problems(password, username, email)
        if found:
            raise ValidationProblem({field: joined(found)})
