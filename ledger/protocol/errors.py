"""The one base exception of the ``ledger`` package, and the protocol's own."""


class LedgerError(Exception):
    """Base of every error raised by ``ledger``; specific ones may also inherit a built-in."""


class ProtocolError(LedgerError, ValueError):
    """A report, sample, signature or encoding that does not fit the protocol."""
