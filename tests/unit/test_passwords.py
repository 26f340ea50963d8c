"""Unit tests for apicrud.auth.passwords."""

from __future__ import annotations

import time

import pytest
from argon2 import PasswordHasher

from apicrud.auth.passwords import hash_password, needs_rehash, verify_password


def test_hash_and_verify() -> None:
    h = hash_password("s3cret!")
    assert h.startswith("$argon2id$")
    assert "s3cret!" not in h
    assert verify_password(h, "s3cret!")


def test_salted() -> None:
    assert hash_password("same") != hash_password("same")


def test_unicode_and_empty_password() -> None:
    h = hash_password("pässwörd ✓")
    assert verify_password(h, "pässwörd ✓")
    assert not verify_password(h, "passwort")
    h_empty = hash_password("")
    assert verify_password(h_empty, "")
    assert not verify_password(h_empty, " ")


def test_wrong_password() -> None:
    h = hash_password("right")
    assert not verify_password(h, "wrong")
    assert not verify_password(h, "Right")
    assert not verify_password(h, "")


@pytest.mark.parametrize(
    "bad_hash",
    [None, "", "garbage", "$argon2id$garbage", "$argon2id$v=19$m=65536,t=3,p=4$xx$yy",
     "$2b$12$abc"],
)
def test_bad_hashes_never_raise(bad_hash: str | None) -> None:
    assert verify_password(bad_hash, "anything") is False


def test_non_str_inputs_never_raise() -> None:
    h = hash_password("pw")
    assert verify_password(h, None) is False  # type: ignore[arg-type]
    assert verify_password(12345, "pw") is False  # type: ignore[arg-type]


def test_none_hash_spends_verification_time() -> None:
    h = hash_password("pw")

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    real = timed(lambda: verify_password(h, "wrong"))
    unknown = timed(lambda: verify_password(None, "wrong"))
    garbage = timed(lambda: verify_password("garbage", "wrong"))
    # Unknown users must cost roughly one real verification (not ~0).
    assert unknown > real * 0.4
    assert garbage > real * 0.4


def test_needs_rehash() -> None:
    h = hash_password("pw")
    assert needs_rehash(h) is False
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert needs_rehash(weak) is True
    assert verify_password(weak, "pw")  # old hashes keep working
    assert needs_rehash("garbage") is True


def test_hash_password_type() -> None:
    with pytest.raises(TypeError):
        hash_password(None)  # type: ignore[arg-type]
