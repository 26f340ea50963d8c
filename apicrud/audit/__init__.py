"""Who changed what: the audit trail (see :mod:`apicrud.audit.trail`).

``init_app`` installs ``services.audit``; an application opts in by declaring a model
named ``Audit`` with :class:`AuditMixin` in its models module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apicrud.audit.model import AuditMixin
from apicrud.audit.trail import AuditTrail, install

if TYPE_CHECKING:
    from apicrud.services import Services

__all__ = ["AuditMixin", "AuditTrail", "init_app"]


def init_app(services: Services) -> None:
    """Record every write of the requests of ``services`` (when the app has the model)."""
    install(services)
