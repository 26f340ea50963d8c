"""The benchmark's data set: users, lists, memberships and messages with mixed privacy.

``seed(settings, scale)`` migrates an empty database with the project's own migrations and
fills it through SQLAlchemy Core in batches (fast on SQLite, PostgreSQL and MariaDB). Every
account shares one Argon2id hash of ``PASSWORD``: hashing 1,000 passwords would take
minutes and change nothing measured. Which messages the benchmark user may read is worked
out here, in Python, from the same rules as rbac.yaml (CONTRACT 5), so both servers'
answers can be checked against a third opinion before any load is applied.
"""

from __future__ import annotations

import datetime as dt
import importlib
import random
from dataclasses import dataclass, field
from typing import Any

PASSWORD = "bench-password-0123"
PRIVACY = ("public", "invitee", "member", "manager", "secret")
PRIVACY_WEIGHTS = (30, 15, 30, 15, 10)
LEVELS = ("invitee", "member", "manager")  # listmember.authorization, lowest first
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey").split()


@dataclass(frozen=True)
class Scale:
    users: int
    lists: int
    messages: int

    @classmethod
    def named(cls, name: str) -> Scale:
        return {"full": cls(1000, 50, 100_000), "medium": cls(1000, 50, 20_000),
                "tiny": cls(40, 10, 2_000)}[name]


@dataclass
class Dataset:
    """What the load generator and the checks need to know about the seeded data."""

    scale: Scale
    me: str                      # person id of the benchmark user ("bench")
    my_lists: dict[str, str]     # list id -> the benchmark user's level there
    postable_lists: list[str]    # lists where the benchmark user may post (member+)
    readable_count: int          # messages the benchmark user may read
    readable_sample: list[str]   # ids of readable messages (get by id)
    own_messages: list[str]      # the benchmark user's messages (update with If-Match)
    login_users: list[str]       # usernames that log in during the login run
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"users": self.scale.users, "lists": self.scale.lists,
                "messages": self.scale.messages, **self.counts,
                "bench_user_lists": {lv: sum(1 for v in self.my_lists.values() if v == lv)
                                     for lv in LEVELS},
                "bench_user_readable_messages": self.readable_count,
                "privacy_mix_percent": dict(zip(PRIVACY, PRIVACY_WEIGHTS, strict=True))}


def username(n: int) -> str:
    return "bench" if n == 0 else f"user{n:04d}"


def readable(me: str, levels: dict[str, str], uid: str, list_id: str, privacy: str) -> bool:
    """CONTRACT 5 for a message: the author, anyone for public, else a holder of the list's
    role at or above the privacy (never secret)."""
    if uid == me or privacy == "public":
        return True
    level = levels.get(list_id)
    return (level is not None and privacy != "secret"
            and PRIVACY.index(privacy) <= PRIVACY.index(level))


def seed(settings, scale: Scale, seed_value: int = 20261122) -> Dataset:
    from sqlalchemy import func, select

    from apicrud.auth.passwords import hash_password
    from apicrud.db import migrate
    from apicrud.db.base import new_id, utcnow
    from apicrud.db.engine import Database, drop_all_tables

    drop_all_tables(settings.sqlalchemy_url)
    migrate.upgrade(settings)
    models = importlib.import_module(settings.models_module)
    rng = random.Random(seed_value)
    prefix = settings.id_prefix
    now = utcnow()
    start = now - dt.timedelta(seconds=scale.messages + 3600)
    password_hash = hash_password(PASSWORD)
    base = {"status": "active", "version": 1, "live": True, "created": start}

    people = [new_id(prefix) for _ in range(scale.users)]
    me = people[0]
    persons = [{**base, "id": pid, "name": f"Person {n}", "identity": f"{username(n)}@example.com",
                "privacy": rng.choice(("public", "member"))} for n, pid in enumerate(people)]
    accounts = [{**base, "id": new_id(prefix), "name": username(n), "uid": pid,
                 "password": password_hash, "is_admin": False, "totp_enabled": False}
                for n, pid in enumerate(people)]
    list_ids = [new_id(prefix) for _ in range(scale.lists)]
    # every list belongs to someone else, so the benchmark user's access comes from
    # memberships: half the lists, 40% as manager, 40% as member, 20% as invitee
    lists = [{**base, "id": lid, "name": f"list {i}", "description": "benchmark list",
              "privacy": rng.choice(PRIVACY[:4]), "uid": people[1 + i % (scale.users - 1)]}
             for i, lid in enumerate(list_ids)]
    joined = rng.sample(list_ids, scale.lists // 2)
    n_mgr = n_mem = round(len(joined) * 0.4)
    my_lists = {lid: ("manager" if i < n_mgr else "member" if i < n_mgr + n_mem else "invitee")
                for i, lid in enumerate(joined)}
    members = [{**base, "id": new_id(prefix), "list_id": lid, "uid": me, "authorization": lv}
               for lid, lv in my_lists.items()]
    owners = {row["id"]: row["uid"] for row in lists}
    for pid in people[1:]:  # everybody else: three lists each, at a random level
        for lid in rng.sample(list_ids, min(3, scale.lists)):
            if owners[lid] != pid:
                members.append({**base, "id": new_id(prefix), "list_id": lid, "uid": pid,
                                "authorization": rng.choice(LEVELS)})

    database = Database(settings.sqlalchemy_url)
    own, sample, n_readable = [], [], 0
    try:
        with database.engine.begin() as conn:
            conn.execute(models.Person.__table__.insert(), persons)
            conn.execute(models.Account.__table__.insert(), accounts)
            conn.execute(models.List.__table__.insert(), lists)
            conn.execute(models.ListMember.__table__.insert(), members)
        table = models.Message.__table__
        chunk = 5_000
        own_share = max(0.02, 200 / scale.messages * scale.lists / max(1, sum(
            lv != "invitee" for lv in my_lists.values())))
        for first in range(0, scale.messages, chunk):
            batch = []
            for i in range(first, min(scale.messages, first + chunk)):
                mid = new_id(prefix)
                list_id = list_ids[i % scale.lists]
                # 2% (at least 200) written by the benchmark user, in lists where it may
                # post: the update run needs a few records per connection
                author = me if rng.random() < own_share else rng.choice(people[1:])
                if author == me and my_lists.get(list_id) not in ("member", "manager"):
                    author = rng.choice(people[1:])
                privacy = rng.choices(PRIVACY, PRIVACY_WEIGHTS)[0]
                batch.append({**base, "id": mid, "list_id": list_id, "uid": author,
                              "privacy": privacy, "created": start + dt.timedelta(seconds=i),
                              "subject": " ".join(rng.choices(WORDS, k=5)),
                              "content": " ".join(rng.choices(WORDS, k=40))})
                if author == me:
                    own.append(mid)
                if readable(me, my_lists, author, list_id, privacy):
                    n_readable += 1
                    sample.append(mid)
            with database.engine.begin() as conn:
                conn.execute(table.insert(), batch)
        with database.session() as session:
            counts = {name: session.execute(select(func.count()).select_from(model))
                      .scalar_one()
                      for name, model in (("persons", models.Person), ("lists", models.List),
                                          ("memberships", models.ListMember),
                                          ("message_rows", models.Message))}
    finally:
        database.dispose()
    if counts["message_rows"] != scale.messages:
        raise RuntimeError(f"seeded {counts['message_rows']} messages, not {scale.messages}")
    rng.shuffle(sample)
    # posting needs the member role; a list's holders read it whatever its privacy
    # (CONTRACT 5), so every list where the user is member or manager takes posts
    postable = sorted(lid for lid, lv in my_lists.items() if lv != "invitee")
    return Dataset(
        scale=scale, me=me, my_lists=my_lists, postable_lists=postable,
        readable_count=n_readable, readable_sample=sample[:2000], own_messages=own,
        login_users=[username(n) for n in range(1, min(scale.users, 201))], counts=counts)
