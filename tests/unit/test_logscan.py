"""The suite's secret scan (tests/logscan.py): what it finds and what it must not take for
a leaked one-time code."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import logscan

CODE = ("123456", "a one-time code")


def _leaks(text: str, field: str = "message") -> list[str]:
    return logscan.leaks([("apicrud", logging.INFO, [(field, text)])], [CODE])


def test_a_one_time_code_as_a_number_of_its_own_is_a_leak():
    assert _leaks("login with code 123456 failed")
    assert _leaks('{"otp": "123456"}')


def test_the_fraction_of_a_timestamp_is_no_code():
    # an audit entry's created column: its microseconds may be any six digits
    assert _leaks("2026-12-02 11:44:19.123456", field="created") == []
    assert _leaks("took 0.123456 s") == []


def test_digits_inside_a_longer_number_or_word_are_no_code():
    assert _leaks("id 91234567") == []
    assert _leaks("x-123456abc") == []
