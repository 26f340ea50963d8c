"""Read-through JSON caches in Redis, shared by every instance.

A :class:`ReadThrough` keeps one JSON value per id under its key family
(``apicrud:<family>:<id>``): :meth:`~ReadThrough.get` answers from Redis, or loads the
value, stores it for ``ttl`` seconds and answers it. A write that changes what a value is
made of calls :meth:`~ReadThrough.drop_around_commit`: the copy is dropped at once, and
again once the transaction commits, so a read that ran between the two (seeing the old
rows) cannot leave its stale copy behind. Used for membership roles, grants and account
settings.

A cache made with ``epochs=True`` can also be dropped for every id at once: each copy
records the epoch (one counter, ``apicrud:<family>:epoch``) it was read in, and
:meth:`~ReadThrough.new_epoch_around_commit` starts a new one, so every copy is stale
from then on (membership roles with cascades: a change high in a chain changes what
everyone below it holds). The epoch comes in the same round trip as the copy.

:meth:`~ReadThrough.keys_for` names what :meth:`~ReadThrough.get` reads (the epoch, then
the copy), so a caller that talks to Redis anyway can read them in the same command and
hand the replies to ``get(..., raw=...)``: one round trip instead of two, and the same
freshness (the copy and its epoch are still read once per ``get``, by this request).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from apicrud import redis_keys

T = TypeVar("T")


class ReadThrough:
    """:param client: the Redis client, or a callable returning it (a provider's client
        may be replaced while the service runs)
    :param family: the key family (``"grants"`` -> ``apicrud:grants:<id>``)
    :param ttl: seconds a copy is kept, unless :meth:`get` is told a shorter one
    :param epochs: copies are good for the epoch they were read in only (see
        :meth:`new_epoch_around_commit`)
    """

    def __init__(self, client: Any, family: str, ttl: int, *, epochs: bool = False) -> None:
        self._client: Callable[[], Any] = client if callable(client) and \
            not hasattr(client, "get") else (lambda: client)
        self.prefix = redis_keys.prefix(family)
        self.ttl = ttl
        self.epochs = epochs
        self.epoch_key = self.prefix + "epoch"

    def key(self, ident: str) -> str:
        return self.prefix + ident

    def keys_for(self, ident: str) -> list[str]:
        """The keys :meth:`get` reads for ``ident``, in the order ``raw`` gives them."""
        key = self.prefix + ident
        return [self.epoch_key, key] if self.epochs else [key]

    def get(self, ident: str, load: Callable[[], T], *,
            ttl: Callable[[T], int] | None = None,
            valid: Callable[[Any], bool] | None = None,
            raw: list[Any] | None = None) -> T:
        """The cached value of ``ident``, else ``load()``'s, cached.

        :param ttl: seconds to keep a loaded value (given the value), if not ``self.ttl``
        :param valid: whether a cached value is still of the expected shape (else it is
            loaded again: a copy written by an older version, say)
        :param raw: the replies to ``keys_for(ident)``, read by the caller in this
            request (in a command of its own): then ``get`` does not read them again
        """
        client = self._client()
        epoch = None
        replies = raw if raw is not None else (
            client.mget(self.keys_for(ident)) if self.epochs else [client.get(self.key(ident))])
        if self.epochs:
            current, cached = replies
            epoch = int(current or 0)
        else:
            cached = replies[0]
        if cached is not None:
            try:
                value = json.loads(cached)
            except ValueError:
                value = None  # unreadable: load it again
            else:
                if self.epochs:  # [epoch, value]: good in that epoch only
                    if isinstance(value, list) and len(value) == 2 and value[0] == epoch \
                            and (valid is None or valid(value[1])):
                        return value[1]
                elif valid is None or valid(value):
                    return value
        value = load()
        client.set(self.key(ident), json.dumps([epoch, value] if self.epochs else value),
                   ex=max(1, ttl(value) if ttl is not None else self.ttl))
        return value

    def drop(self, *idents: str | None) -> None:
        keys = [self.key(i) for i in idents if i]
        if keys:
            self._client().delete(*keys)

    def drop_around_commit(self, ctx: Any, *idents: str | None) -> None:
        """Drop the copies now and again after ``ctx``'s transaction commits."""
        self.drop(*idents)
        ctx.after_commit.append(lambda: self.drop(*idents))

    def new_epoch_around_commit(self, ctx: Any) -> None:
        """Make every copy stale (``epochs=True``): a new epoch now, and again after
        ``ctx``'s transaction commits."""
        client = self._client
        client().incr(self.epoch_key)
        ctx.after_commit.append(lambda: client().incr(self.epoch_key))
