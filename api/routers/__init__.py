"""One router per resource."""

from __future__ import annotations

from fastapi import APIRouter

from . import (accounts, audit, balances, chain, disputes, faucet, health, leases, metering, nodes, offers, providers,
               price_index, tokens, tx, vouchers)

ALL_ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    chain.router,
    accounts.router,
    providers.router,
    nodes.router,
    offers.router,
    leases.router,
    disputes.router,
    vouchers.router,
    price_index.router,
    metering.router,
    balances.router,
    audit.router,
    tokens.router,
    tx.router,
)

__all__ = ["ALL_ROUTERS", "faucet"]
