"""Password hashing with Argon2id (argon2-cffi).

``hash_password`` produces a self-describing PHC string
(``$argon2id$v=19$m=...,t=...,p=...$salt$hash``); ``verify_password`` never
raises and, for unknown users (``hash is None``) or unusable stored hashes,
still performs one full verification against a fixed dummy hash so the
response time does not reveal whether an account exists.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["hash_password", "verify_password", "needs_rehash", "hasher", "warm_up"]

#: Module-wide hasher: argon2-cffi's RFC 9106 "low memory" defaults (Argon2id,
#: time_cost=3, memory_cost=64 MiB, parallelism=4, 16-byte salt, 32-byte hash).
hasher = PasswordHasher()

@functools.cache
def _dummy_hash() -> str:
    """Hash of a throw-away password with the same parameters as real hashes, so verifying
    against it costs the same time; made on first use (about a second of CPU), not at
    import, so commands that never verify a password don't pay for it."""
    return hasher.hash("apicrud-dummy-password-for-timing-equalisation")


def warm_up() -> None:
    """Make the dummy hash now (the server does at start), so that not even the first
    login of an unknown user takes longer than a known user's."""
    _dummy_hash()


def hash_password(pw: str) -> str:
    """Return an Argon2id hash (PHC string) of ``pw``."""
    if not isinstance(pw, str):
        raise TypeError("password must be a str")
    return hasher.hash(pw)


def _burn(pw: str) -> None:
    """Spend the time of one verification against the dummy hash."""
    try:
        hasher.verify(_dummy_hash(), pw)
    except VerificationError:  # a mismatch: the expected outcome, only the time counts
        return


def verify_password(hash: str | None, pw: str) -> bool:  # noqa: A002 - public API name
    """True if ``pw`` matches ``hash``; never raises.

    A missing (None/empty) or malformed hash returns False after spending the
    time of one real verification.
    """
    if not isinstance(pw, str):
        pw = ""
    if not hash or not isinstance(hash, str):
        _burn(pw)
        return False
    try:
        return hasher.verify(hash, pw)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError, ValueError, TypeError):
        # Unusable stored hash: behave like an unknown user.
        _burn(pw)
        return False
    except Exception:  # noqa: BLE001  a hasher error of any kind: deny
        return False


def needs_rehash(hash: str) -> bool:  # noqa: A002 - public API name
    """True if ``hash`` was made with other parameters than the current hasher's.

    Unparseable hashes also return True (they should be replaced on next login).
    """
    try:
        return hasher.check_needs_rehash(hash)
    except Exception:  # noqa: BLE001  an unreadable hash is replaced
        return True
