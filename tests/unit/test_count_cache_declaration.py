"""``count_cache`` in x-apicrud-resources: seconds from 0 to 86400, anything else is a
problem named at start (never a cache that keeps counts for a surprising time)."""

from __future__ import annotations

import pytest

from apicrud.crud.registry import build_resources


def declared(value) -> tuple[int, list[str]]:
    spec = {"x-apicrud-resources": {"message": {"count_cache": value}},
            "components": {"schemas": {}}}
    res = build_resources(spec, "models")["message"]
    return res.count_cache, [p for p in res.problems if "count_cache" in p]


@pytest.mark.parametrize("value", [0, 1, 60, 86400])
def test_seconds_in_range_are_taken(value):
    assert declared(value) == (value, [])


@pytest.mark.parametrize("value", [-1, 86401, "60", 1.5, True, None, [60]])
def test_anything_else_is_a_problem_and_keeps_nothing(value):
    kept, problems = declared(value)
    assert kept == 0
    assert problems == [f"resource message: count_cache {value!r} must be a number of "
                        "seconds from 0 (no cache) to 86400"]


def test_absent_means_no_cache():
    spec = {"x-apicrud-resources": {"message": {}}, "components": {"schemas": {}}}
    assert build_resources(spec, "models")["message"].count_cache == 0
