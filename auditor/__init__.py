"""The auditor: verifies every metering proof and payment of a lease from public data, trusting no bridge.

:mod:`auditor.core` holds the checks (pure), :mod:`auditor.sources` where their input comes from, and
:mod:`auditor.cli` the ``compute-ledger audit`` command."""

from .core import AuditError

__all__ = ["AuditError"]
