"""The TOTP code generator against the published test vectors (RFC 4226, RFC 6238)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlparse

import pytest

from apicrud.auth.totp import b32, hotp, match, otpauth_uri, totp

RFC_KEY = b"12345678901234567890"


@pytest.mark.parametrize("counter,expected", list(enumerate([
    "755224", "287082", "359152", "969429", "338314",
    "254676", "287922", "162583", "399871", "520489"])))
def test_hotp_rfc4226_appendix_d(counter, expected):
    assert hotp(RFC_KEY, counter) == expected


@pytest.mark.parametrize("at,expected", [
    (59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
    (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")])
def test_totp_rfc6238_appendix_b_sha1(at, expected):
    assert totp(RFC_KEY, at=at, digits=8) == expected


def test_match_accepts_one_step_either_side_and_names_it():
    at = 1_700_000_000
    step = at // 30
    assert match(RFC_KEY, totp(RFC_KEY, at=at), at=at) == step
    assert match(RFC_KEY, totp(RFC_KEY, at=at - 30), at=at) == step - 1
    assert match(RFC_KEY, totp(RFC_KEY, at=at + 30), at=at) == step + 1
    assert match(RFC_KEY, totp(RFC_KEY, at=at + 90), at=at) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", None, " 12345"])
def test_match_refuses_malformed_codes(code):
    assert match(RFC_KEY, code) is None


def test_otpauth_uri_carries_base32_secret_and_issuer():
    uri = otpauth_uri(RFC_KEY, "ada@example.com", "My Service")
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert parsed.path == "/My%20Service:ada@example.com"
    query = parse_qs(parsed.query)
    assert query["issuer"] == ["My Service"] and query["digits"] == ["6"]
    assert query["period"] == ["30"] and query["algorithm"] == ["SHA1"]
    secret = query["secret"][0]
    assert secret == b32(RFC_KEY) and "=" not in secret
    assert base64.b32decode(secret + "=" * (-len(secret) % 8)) == RFC_KEY
