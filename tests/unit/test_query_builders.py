"""apicrud.db.query: filters, q, sort and keyset cursors, as SQL run on a real SQLite
engine (what each builder selects, not how its SQL reads)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Boolean, DateTime, Float, Integer, String, Text, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from apicrud.db import query as q
from apicrud.errors import BadRequest


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    flag: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime)


LONG = "L" * 300  # longer than SORT_PREFIX: sorts on its prefix
ITEMS = [  # id, name, note, rank, score, flag, created
    ("i1", "apple pie", "sweet_and tart", 3, 1.5, True, datetime(2024, 1, 1, 9)),
    ("i2", "Banana split", None, 1, None, False, datetime(2024, 1, 2, 9)),
    ("i3", "cherry", "100% fruit", None, 2.5, True, datetime(2024, 1, 3, 9)),
    ("i4", "apple tart", "sweet", 3, 0.5, False, datetime(2024, 1, 4, 9)),
    ("i5", "date", LONG + "b", 2, 2.5, False, datetime(2024, 1, 5, 9)),
    ("i6", "elder", LONG + "a", 2, None, True, datetime(2024, 1, 6, 9)),
]
FIELDS = {name: getattr(Item, name) for name in
          ("id", "name", "note", "rank", "score", "flag", "created")}


@pytest.fixture(scope="module")
def session():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all(Item(id=i, name=n, note=t, rank=r, score=sc, flag=f, created=c)
                  for i, n, t, r, sc, f, c in ITEMS)
        s.commit()
        yield s
    engine.dispose()


def found(session, filters, search=()):
    clauses = q.build_filter(filters, FIELDS, search)
    return sorted(session.execute(select(Item.id).where(*clauses)).scalars())


# -- filters ---------------------------------------------------------------------------

@pytest.mark.parametrize("filters,expected", [
    ({}, ["i1", "i2", "i3", "i4", "i5", "i6"]),
    ({"rank": 3}, ["i1", "i4"]),
    ({"flag": True}, ["i1", "i3", "i6"]),
    ({"rank": [1, 2]}, ["i2", "i5", "i6"]),
    ({"rank": [1, None]}, ["i2", "i3"]),  # a null in a list matches nulls
    ({"rank": []}, []),
    ({"note": None}, ["i2"]),
    ({"note": "*"}, ["i1", "i3", "i4", "i5", "i6"]),
    ({"name": "apple%"}, ["i1", "i4"]),
    ({"name": "APPLE%"}, ["i1", "i4"]),  # % patterns ignore letter case
    ({"note": "sweet_%"}, ["i1"]),  # _ is literal, not a one-character wildcard
    ({"rank": 3, "flag": True}, ["i1"]),  # the conditions of one object all hold
    ({"created": "2024-01-03T09:00:00Z"}, ["i3"]),
    ({"created": "2024-01-03T10:00:00+01:00"}, ["i3"]),  # stored as naive UTC
])
def test_build_filter_values(session, filters, expected):
    assert found(session, filters) == expected


@pytest.mark.parametrize("filters,expected", [
    ({"rank_gte": 2}, ["i1", "i4", "i5", "i6"]),
    ({"rank_lt": 2}, ["i2"]),
    ({"rank_gt": 2, "rank_lte": 3}, ["i1", "i4"]),
    ({"rank_ne": 3}, ["i2", "i3", "i5", "i6"]),  # not-equal includes nulls
    ({"name_like": "TART"}, ["i4"]),
    ({"note_like": "100%"}, ["i3"]),  # a client's % is no wildcard in _like
    ({"created_gte": "2024-01-05T00:00:00"}, ["i5", "i6"]),
    ({"score_lt": 2}, ["i1", "i4"]),
])
def test_build_filter_operators(session, filters, expected):
    assert found(session, filters) == expected


@pytest.mark.parametrize("filters,expected", [
    ({"or": [{"rank": 1}, {"flag": True, "score": 2.5}]}, ["i2", "i3"]),
    ({"and": [{"rank_gte": 2}, {"or": [{"name": "date"}, {"name": "elder"}]}]},
     ["i5", "i6"]),
    ({"or": [{}, {"rank": 1}]}, ["i1", "i2", "i3", "i4", "i5", "i6"]),  # {} holds always
])
def test_build_filter_groups(session, filters, expected):
    assert found(session, filters) == expected


@pytest.mark.parametrize("text,expected", [
    ("apple", ["i1", "i4"]),
    ("APPLE tart", ["i1", "i4"]),  # every word, in any of the columns
    ("sweet pie", ["i1"]),
    ("%", ["i1", "i2", "i3", "i4", "i5", "i6"]),  # no word left: no condition
    ("nothing-like-it", []),
])
def test_q_searches_every_word_in_the_text_columns(session, text, expected):
    assert found(session, {"q": text}, search=("name", "note")) == expected


@pytest.mark.parametrize("filters,field", [
    ({"colour": 1}, "filter"),
    ({"rank": "three"}, "filter.rank"),
    ({"flag": 1}, "filter.flag"),
    ({"rank": 2 ** 63}, "filter.rank"),
    ({"score": float("inf")}, "filter.score"),
    ({"name": "a\x00b"}, "filter.name"),
    ({"name": "x" * 1025}, "filter.name"),
    ({"created": "yesterday"}, "filter.created"),
    ({"rank": {"gte": 1}}, "filter.rank"),
    ({"rank_gte": [1]}, "filter.rank_gte"),
    ({"rank_like": "1"}, "filter.rank_like"),
    ({"rank": list(range(1001))}, "filter.rank"),
    ({"or": []}, "filter.or"),
    ({"or": [1]}, "filter.or"),
    ({"or": [{"or": [{"or": [{"or": [{"or": [{"rank": 1}]}]}]}]}]},
     "filter.or[0].or[0].or[0].or[0].or"),
    ({"q": 5}, "filter.q"),
])
def test_build_filter_refuses_bad_input_naming_where(filters, field):
    with pytest.raises(BadRequest) as exc:
        q.build_filter(filters, FIELDS, ("name",))
    assert field in exc.value.errors


def test_build_filter_bounds_the_number_of_conditions():
    many = {"or": [{"rank": i} for i in range(q.MAX_FILTER_TERMS)]}
    with pytest.raises(BadRequest) as exc:
        q.build_filter(many, FIELDS)
    assert "filter" in exc.value.errors


@pytest.mark.parametrize("text", ["[1]", "{", "1" * 10 + "]"])
def test_parse_filter_wants_a_json_object(text):
    with pytest.raises(BadRequest):
        q.parse_filter(text)


def test_parse_filter_reads_an_object():
    assert q.parse_filter('{"rank": 3}') == {"rank": 3} and q.parse_filter(None) == {}


# -- sort ------------------------------------------------------------------------------

def ordered(session, sort_text, where=()):
    sort = q.parse_sort(sort_text, FIELDS)
    stmt = select(Item.id).where(*where).order_by(*q.order_by(sort, FIELDS, Item.id))
    return list(session.execute(stmt).scalars())


@pytest.mark.parametrize("sort_text,expected", [
    (None, ["i1", "i2", "i3", "i4", "i5", "i6"]),
    ("id:desc", ["i6", "i5", "i4", "i3", "i2", "i1"]),
    ("rank", ["i2", "i5", "i6", "i1", "i4", "i3"]),  # ties by id; nulls last
    ("rank:desc", ["i4", "i1", "i6", "i5", "i2", "i3"]),  # nulls last; ties by id, desc
    ("rank:desc,score:asc", ["i4", "i1", "i5", "i6", "i2", "i3"]),
    ("score:DESC,name", ["i3", "i5", "i1", "i4", "i2", "i6"]),
    ("note", ["i3", "i5", "i6", "i4", "i1", "i2"]),  # long text sorts on its prefix, then id
])
def test_order_by(session, sort_text, expected):
    assert ordered(session, sort_text) == expected


def test_parse_sort_stops_at_id():
    assert q.parse_sort("rank,id:desc,name", FIELDS).keys == (("rank", False), ("id", True))


@pytest.mark.parametrize("text", ["colour", "rank:up", "rank,rank", "rank,score,name,flag"])
def test_parse_sort_refuses(text):
    with pytest.raises(BadRequest) as exc:
        q.parse_sort(text, FIELDS)
    assert list(exc.value.errors) == ["sort"]


# -- keyset cursors --------------------------------------------------------------------

@pytest.mark.parametrize("sort_text", [
    None, "id:desc", "rank", "rank:desc", "rank:desc,score:asc", "score:desc,name",
    "note", "note:desc", "created:desc", "flag,rank:desc", "name:desc,rank,score",
])
@pytest.mark.parametrize("size", [1, 2, 4])
def test_keyset_pages_walk_the_whole_order_once(session, sort_text, size):
    """Page after page through a signed cursor, each page after the last row of the one
    before, gives every row once, in the order of a single query."""
    signer = q.cursor_signer("secret")
    sort = q.parse_sort(sort_text, FIELDS)
    order = q.order_by(sort, FIELDS, Item.id)
    seen: list[str] = []
    after = []
    for _ in range(len(ITEMS) + 1):
        rows = list(session.execute(select(Item).where(*after).order_by(*order)
                                    .limit(size)).scalars())
        if not rows:
            break
        seen += [r.id for r in rows]
        token = q.encode_cursor(signer, {"s": sort.text(), "f": {}, "i": rows[-1].id,
                                         "k": q.sort_key(rows[-1], sort, FIELDS)})
        state = q.decode_cursor(signer, token)
        after = [q.after_clause(q.parse_sort(state["s"], FIELDS), FIELDS, Item.id,
                                state["k"], state["i"])]
    assert seen == ordered(session, sort_text)


@pytest.mark.parametrize("sort_text", [
    None, "rank", "rank:desc,score:asc", "note:desc", "created:desc", "flag,rank:desc",
    "name:desc,rank,score",
])
def test_one_statement_per_null_pattern_walks_every_page(session, sort_text):
    """What find does: the page statement after a row is built once per sort and pattern
    of null keys (after_template) and reused, each page binding its own last row's keys
    (after_values); the walk equals a single query's order, twice over (the second walk
    only reuses statements)."""
    sort = q.parse_sort(sort_text, FIELDS)
    order = q.order_by(sort, FIELDS, Item.id)
    built: dict[tuple[bool, ...], object] = {}
    for _ in range(2):
        seen: list[str] = []
        stmt, params = select(Item).order_by(*order).limit(2), {}
        for _ in range(len(ITEMS) + 1):
            rows = list(session.execute(stmt, params).scalars())
            if not rows:
                break
            seen += [r.id for r in rows]
            nulls, params = q.after_values(sort, FIELDS, q.sort_key(rows[-1], sort, FIELDS),
                                           rows[-1].id)
            if nulls not in built:
                built[nulls] = select(Item).where(q.after_template(
                    sort, FIELDS, Item.id, nulls)).order_by(*order).limit(2)
            stmt = built[nulls]
        assert seen == ordered(session, sort_text)


def test_sort_key_carries_a_prefix_of_long_text_and_iso_dates(session):
    record = session.get(Item, "i5")
    key = q.sort_key(record, q.parse_sort("note,created", FIELDS), FIELDS)
    assert key == [(LONG + "b")[:q.SORT_PREFIX], "2024-01-05T09:00:00"]


@pytest.mark.parametrize("keys", [["a", "b"], "a", [], None])
def test_after_clause_refuses_keys_of_another_sort(keys):
    with pytest.raises(BadRequest) as exc:
        q.after_clause(q.parse_sort("name", FIELDS), FIELDS, Item.id, keys, "i1")
    assert exc.value.errors == {"cursor_next": "invalid cursor"}


def test_after_clause_refuses_a_bad_date_key():
    with pytest.raises(BadRequest):
        q.after_clause(q.parse_sort("created", FIELDS), FIELDS, Item.id, ["not a date"], "i1")


def test_decode_cursor_wants_the_whole_state():
    signer = q.cursor_signer("secret")
    with pytest.raises(BadRequest):
        q.decode_cursor(signer, q.encode_cursor(signer, {"s": "id:asc", "f": {}}))
    with pytest.raises(BadRequest):
        q.decode_cursor(signer, q.encode_cursor(signer, ["s", "f", "k", "i"]))
