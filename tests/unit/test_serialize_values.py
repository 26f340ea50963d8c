"""What serialize shows of each exposed value: a date-time in UTC with ``Z`` wherever it
comes from (a DateTime column, a type decorator that makes one out of text, an exposed
attribute that is no column, a type that cannot name its Python type), every other value
as it is. serialize converts only the fields that may hold a date-time: these cases are
the ones where the column type alone would not say so."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from types import SimpleNamespace

from sqlalchemy import Date, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, UserDefinedType

from apicrud.crud.controller import BasicCRUD
from apicrud.crud.registry import ResourceSpec


class TextTime(TypeDecorator):
    """Stored as text, read as a date-time: its python_type says str."""

    impl = String(40)
    cache_ok = True

    @property
    def python_type(self):
        return str  # (what it stores)


class Opaque(UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw):
        return "BLOB"


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "serialize_event"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    title: Mapped[str] = mapped_column(String(40))
    seats: Mapped[int] = mapped_column(Integer)
    starts: Mapped[datetime] = mapped_column(DateTime)
    day: Mapped[date] = mapped_column(Date)
    noted = mapped_column(TextTime)  # (an aware date-time: shown in UTC too)
    blob = mapped_column(Opaque)

    @property
    def reminder(self) -> datetime:  # exposed, no column
        return datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class Access:
    """The evaluator's answers serialize asks for: every field, letters "r"."""

    def actions_for(self, principal, resource):
        return lambda record: "r"

    def read_fields_for(self, principal, resource):
        return lambda record: None

    def has_field_rules(self, resource):
        return False

    def has_conditions(self, resource):
        return False


def test_every_date_time_is_shown_in_utc_and_every_other_value_as_it_is():
    spec = ResourceSpec(name="event", model=Event, controller_path=None,
                        exposed=("id", "title", "seats", "starts", "day", "noted", "blob",
                                 "reminder"))
    crud = BasicCRUD(spec, SimpleNamespace(access=Access()))  # type: ignore[arg-type]
    assert set(crud._timed_fields) == {"starts", "day", "noted", "blob", "reminder"}
    when = datetime(2026, 12, 2, 23, 30, 0, 5)  # stored: naive UTC
    record = Event(id="e1", title="2026-12-02", seats=3, starts=when, day=date(2026, 12, 3),
                   noted=datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
                   blob=datetime(2026, 5, 6))
    out = crud.serialize(SimpleNamespace(principal=None, related={}),  # type: ignore[arg-type]
                         record)
    assert out == {"id": "e1", "title": "2026-12-02", "seats": 3,
                   "starts": "2026-12-02T23:30:00.000005Z", "day": date(2026, 12, 3),
                   "noted": "2026-01-02T03:04:05.000000Z",
                   "blob": "2026-05-06T00:00:00.000000Z",
                   "reminder": "2026-12-01T08:00:00.000000Z"}
    assert list(out) == list(spec.exposed)  # the fields keep their order
