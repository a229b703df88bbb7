"""The one base exception of the ``ledger`` package."""


class LedgerError(Exception):
    """Base of every error raised by ``ledger``; specific ones may also inherit a built-in."""
