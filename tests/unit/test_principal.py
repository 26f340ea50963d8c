"""A caller's roles are loaded into a copy of its principal (apicrud.request_path's
load_roles): the copy must be the one ``dataclasses.replace`` makes, and must never keep
the access key the caller had before its memberships were known."""

from __future__ import annotations

import dataclasses

from apicrud.auth.principal import Principal


def test_the_copy_holds_the_memberships_and_everything_else_unchanged():
    before = Principal(uid="u1", account_id="a1", username="ann", method="apikey",
                       scopes=frozenset({"message:read"}), apikey_id="k1", token="t")
    levels, kinds, via = {"L1": "member"}, {"L1": "list"}, {"L2": "L1"}
    after = before.with_memberships(levels, kinds, via)
    assert after == dataclasses.replace(before, memberships=levels, membership_kinds=kinds,
                                        membership_via=via)
    assert type(after) is Principal and after is not before
    assert before.memberships == {}  # the original is left as it was


def test_an_access_key_read_before_the_memberships_is_not_carried_over():
    """The evaluator memoizes WHERE clauses and rbac letters under access_key: a copy
    keeping the key of the caller without memberships would be answered as that one."""
    before = Principal(uid="u1")
    stale = before.access_key  # cached on the instance
    after = before.with_memberships({"L1": "manager"}, {"L1": "list"}, {})
    assert after.access_key != stale
    assert after.access_key == Principal(uid="u1", memberships={"L1": "manager"}).access_key
    assert before.access_key == stale


def test_a_subclass_stays_a_subclass():
    @dataclasses.dataclass(frozen=True)
    class Service(Principal):
        origin: str = "job"

    after = Service(uid="s", origin="cron").with_memberships({}, {}, {})
    assert type(after) is Service and after.origin == "cron"


def test_equal_access_keys_are_one_object_and_unequal_ones_stay_apart():
    """Principal.access_key interns its tuple (memo lookups then compare by identity);
    what two callers may do must still never share a key unless everything in it is
    equal."""
    one = Principal(uid="u1", memberships={"L1": "member", "L2": "invitee"})
    same = Principal(uid="u1", memberships={"L2": "invitee", "L1": "member"})
    assert one.access_key is same.access_key
    others = [Principal(uid="u1", memberships={"L1": "manager", "L2": "invitee"}),
              Principal(uid="u1", memberships={"L1": "member"}),
              Principal(uid="u2", memberships={"L1": "member", "L2": "invitee"}),
              Principal(uid="u1", is_admin=True,
                        memberships={"L1": "member", "L2": "invitee"}),
              Principal(uid="u1", status="pending",
                        memberships={"L1": "member", "L2": "invitee"})]
    keys = [one.access_key] + [p.access_key for p in others]
    assert len(set(keys)) == len(keys)
    assert all(k is not one.access_key for k in keys[1:])
