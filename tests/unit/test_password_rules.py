"""Password rules: length bounds, the account's own name, common and patterned passwords."""

from __future__ import annotations

import pytest

from apicrud.auth.password_rules import PasswordRules, common_passwords
from apicrud.config import load_settings
from apicrud.errors import ValidationProblem

RULES = PasswordRules(min_length=12, max_length=64)


@pytest.mark.parametrize("password", [
    "blue-kettle-on-a-Tuesday", "correct horse battery staple", "Tr0ub4dor&3-xylo",
    "ünïcödé-pässwörd-ok",
])
def test_good_passwords_pass(password):
    assert RULES.problems(password, "jane", "jane.doe@example.com") == []


@pytest.mark.parametrize("password, fragment", [
    ("short", "at least 12"),
    ("x" * 65, "at most 64"),
    ("password12345", "too common"),
    ("!!Password2024!!", "too common"),
    ("Qwertyuiop12", "too common"),
    ("aaaaaaaaaaaaaa", "too easy"),
    ("abcabcabcabcabc", "too easy"),
    ("abababababababab", "too easy"),
    ("abcdefghijklmno", "too easy"),
    ("9876543210987", "too easy"),
    ("poiuytrewq", "too easy"),
    ("zxcvbnm-123456", "too common"),
    ("my-name-is-JaneD-ok", "username"),
    ("jane.doe-is-my-name", "email address"),
])
def test_bad_passwords_are_refused(password, fragment):
    found = RULES.problems(password, "janed", "jane.doe@example.com")
    assert any(fragment in p for p in found), found


def test_check_raises_a_400_naming_the_field():
    with pytest.raises(ValidationProblem) as info:
        RULES.check("short", field="new_password")
    assert info.value.status == 400 and "new_password" in info.value.errors


def test_common_check_can_be_turned_off():
    assert PasswordRules(min_length=8, check_common=False).problems("password1234") == []


def test_short_names_are_not_matched():
    # two-letter usernames would refuse half the dictionary
    assert RULES.problems("blue-kettle-on-a-Tuesday", "ue", "ue@example.com") == []


def test_rules_come_from_settings():
    settings = load_settings(root=".", password_min_length=20, password_max_length=40,
                             password_check_common=False)
    rules = PasswordRules.from_settings(settings)
    assert (rules.min_length, rules.max_length, rules.check_common) == (20, 40, False)
    defaults = PasswordRules.from_settings(load_settings(root="."))
    assert (defaults.min_length, defaults.max_length, defaults.check_common) == \
        (12, 128, True)


def test_shipped_list_is_lower_case_and_not_empty():
    words = common_passwords()
    assert len(words) > 100 and "password" in words
    assert all(w == w.lower() and not w.startswith("#") for w in words)
