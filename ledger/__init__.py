"""Compute Ledger: everything that speaks to the chain, and the metering protocol itself."""

__version__ = "0.1.0"
