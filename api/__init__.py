"""The HTTP bridge of Compute Ledger: ``create_app()`` in :mod:`api.app`, ``main()`` in :mod:`api.cli`."""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
