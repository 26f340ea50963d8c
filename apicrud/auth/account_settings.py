"""Per-account settings: :class:`AccountSettings` (read through Redis) and ``/settings``.

Each account has one ``settings`` record (locale, timezone, default category, default
privacy). Code that needs them, e.g. to render a message in the user's language, reads
``AccountSettings(account_id, services).locale``: the record comes from Redis when
cached (``apicrud:settings:<account_id>``, for ``account_settings_ttl`` seconds), else
from the database, and is created with the defaults the first time anyone reads it.
``uncache()`` drops the cached copy; the ``settings`` resource drops it on every update,
now and after its commit, so the next read anywhere sees the change.

The resource has no create or delete: the record exists once read and goes with its
account. ``GET /settings`` first makes sure the caller's own record exists, so a client
finds it there without knowing its id. Owners read and update their own; admins all
(rbac.yaml).
"""

from __future__ import annotations

import logging
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from apicrud.cache import ReadThrough
from apicrud.context import Reply, RequestContext
from apicrud.crud.controller import BasicCRUD
from apicrud.db.base import new_id
from apicrud.errors import BadRequest
from apicrud.i18n import N_

__all__ = ["AccountSettings", "SettingsController", "FIELDS"]

log = logging.getLogger("apicrud.settings")

#: the fields an AccountSettings exposes (all columns of the record users care about)
FIELDS = ("id", "account_id", "uid", "locale", "timezone", "default_category_id",
          "default_privacy")


class AccountSettings:
    """One account's settings, read lazily through the Redis cache.

    :param account_id: the account whose settings these are
    :param services: the application's Services (database, Redis, settings, models)
    :raises LookupError: (on first access) no active account has this id
    """

    def __init__(self, account_id: str, services: Any) -> None:
        self.account_id = account_id
        self.services = services
        self._values: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return self._cache.key(self.account_id)

    @property
    def _cache(self) -> ReadThrough:
        return ReadThrough(self.services.redis.client, "settings",
                           self.services.settings.account_settings_ttl)

    def __getattr__(self, name: str) -> Any:
        # only reached for names that are not attributes: the settings fields
        if name in FIELDS:
            return self.get()[name]
        raise AttributeError(name)

    def get(self) -> dict[str, Any]:
        """All fields as a dict (cached for the life of this object too)."""
        if self._values is None:
            self._values = self._cache.get(
                self.account_id, self._load,
                valid=lambda v: isinstance(v, dict) and set(FIELDS) <= v.keys())
        return dict(self._values)

    def locale_in(self, session: Any) -> str | None:
        """The account's locale read through ``session`` (a request's open transaction,
        which a second session could wait on), never created nor cached; ``None`` when
        the account has no settings record yet."""
        model = self.services.models.Settings
        return session.execute(select(model.locale).where(
            model.account_id == self.account_id, model.status == "active")).scalar()

    def uncache(self) -> None:
        """Forget the cached copy, in Redis and here."""
        self._cache.drop(self.account_id)
        self._values = None

    def _load(self) -> dict[str, Any]:
        """The record from the database, created with defaults if the account has none."""
        models = self.services.models
        model = models.Settings
        for _ in range(2):  # a concurrent first read may insert it between our two steps
            with self.services.db.session() as db:
                record = db.execute(select(model).where(
                    model.account_id == self.account_id,
                    model.status == "active")).scalars().first()
                if record is not None:
                    return {f: getattr(record, f) for f in FIELDS}
                account = db.execute(select(models.Account).where(
                    models.Account.id == self.account_id,
                    models.Account.status.in_(("active", "pending")))).scalar_one_or_none()
                if account is None:
                    raise LookupError(f"no account {self.account_id!r}")
                record = model(id=new_id(self.services.settings.id_prefix),
                               account_id=account.id, uid=account.uid)
                db.add(record)
                try:
                    db.commit()
                except IntegrityError:
                    db.rollback()
                    continue
                log.info("settings created", extra={"event": "settings_created",
                                                    "uid": account.uid})
                return {f: getattr(record, f) for f in FIELDS}
        raise LookupError(f"settings of account {self.account_id!r} cannot be created")


class SettingsController(BasicCRUD):
    """``settings``: find, get, update; updates validate the timezone and drop the cache."""

    def find(self, ctx: RequestContext) -> Reply:
        account_id = ctx.principal.account_id
        if account_id:
            try:
                AccountSettings(account_id, self.services).get()
            except LookupError:
                pass  # an account being removed: nothing to show
        return super().find(ctx)

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        tz = changes.get("timezone")
        if tz is not None:
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise BadRequest(N_("timezone: %(value)s is not a known time zone",
                                    value=repr(tz[:48])),
                                 errors={"timezone": N_("not a known IANA time zone")}) \
                    from None
        AccountSettings(record.account_id, self.services)._cache.drop_around_commit(
            ctx, record.account_id)
        return changes
