"""The attestor's side of the bridge API (wire format: ``api/METERING_API.md``).

``POST /v1/metering/reports`` submits a signed report with its samples; ``GET /v1/nodes/{id}/active-leases``
says which leases to meter; ``GET /v1/metering/domain`` gives the EIP-712 domain. Also the static lease list
for running without a bridge.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ledger.protocol import DOMAIN_VERSION, safejson

from .errors import BridgeError
from .spool import SpooledReport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A lease of this node as the bridge (or the static list) describes it; times in unix ms."""

    lease_id: int
    gpu_indices: tuple[int, ...]
    start_ms: int
    end_ms: int
    state: str = "Active"
    gpu_set_hash: bytes | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LeaseInfo:
        try:
            gsh = d.get("gpuSetHash")
            return cls(
                lease_id=_int(d["leaseId"]),
                gpu_indices=tuple(_int(i) for i in d["gpuIndices"]),
                start_ms=_int(d["startMs"]),
                end_ms=_int(d["endMs"]),
                state=str(d.get("state", "Active")),
                gpu_set_hash=None if gsh is None else bytes.fromhex(str(gsh).removeprefix("0x")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BridgeError(f"malformed lease entry {d!r}: {e}") from e


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError(f"{v!r} is not an integer")
    return int(v)


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """``accepted``: the bridge holds the report (201 new, 200 duplicate). Otherwise ``error`` says why."""

    accepted: bool
    status: int
    duplicate: bool = False
    code: str | None = None
    error: str | None = None


class LeaseProvider(Protocol):
    def active_leases(self) -> list[LeaseInfo] | None:
        """The node's leases, or None when the answer is unavailable (keep metering what is metered)."""
        ...


class ReportSink(Protocol):
    def submit(self, node_id: int, item: SpooledReport) -> SubmitOutcome: ...


class BridgeClient:
    """HTTP client of the bridge; one per thread. Never raises for HTTP statuses: returns outcomes."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def submit(self, node_id: int, item: SpooledReport) -> SubmitOutcome:
        body = {"nodeId": node_id, "report": item.report, "signature": item.signature, "samples": item.samples}
        try:
            resp = self._http.post("/v1/metering/reports", json=body)
        except httpx.HTTPError as e:
            return SubmitOutcome(False, 0, error=f"bridge unreachable: {type(e).__name__}: {e}")
        try:
            data = safejson.loads(resp.content)
        except ValueError:
            data = None
        if resp.status_code in (200, 201) and isinstance(data, dict) and data.get("accepted") is True:
            got = str(data.get("reportHash", "")).lower()
            if got != item.report_hash.lower():
                return SubmitOutcome(
                    False,
                    resp.status_code,
                    code="hash_mismatch",
                    error=f"bridge acknowledged hash {got}, expected {item.report_hash}",
                )
            return SubmitOutcome(True, resp.status_code, duplicate=bool(data.get("duplicate", resp.status_code == 200)))
        code, message = _error_of(data)
        return SubmitOutcome(
            False, resp.status_code, code=code, error=f"HTTP {resp.status_code} {code or ''}: {message}".strip()
        )

    def active_leases(self, node_id: int) -> list[LeaseInfo]:
        data = self._get_json(f"/v1/nodes/{node_id}/active-leases")
        leases = data.get("leases") if isinstance(data, dict) else None
        if not isinstance(leases, list):
            raise BridgeError("active-leases answer has no 'leases' list")
        return [LeaseInfo.from_json(x) for x in leases]

    def domain(self) -> tuple[int, str]:
        chain_id, escrow, _ = self.domain_info()
        return chain_id, escrow

    def domain_info(self) -> tuple[int, str, str]:
        """(chainId, verifyingContract, chainClock): ``chainClock`` is ``follows`` where the bridge's chain
        has no clock of its own (it is moved forward to reports' windows), else ``real``."""
        data = self._get_json("/v1/metering/domain")
        try:
            version = str(data.get("domainVersion", DOMAIN_VERSION))
            if version != DOMAIN_VERSION:
                raise BridgeError(
                    f"the bridge takes protocol-{version} reports; this attestor signs protocol {DOMAIN_VERSION}"
                )
            return int(data["chainId"]), str(data["verifyingContract"]), str(data.get("chainClock", "real"))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BridgeError(f"malformed domain answer: {e}") from e

    def _get_json(self, path: str) -> Any:
        try:
            resp = self._http.get(path)
        except httpx.HTTPError as e:
            raise BridgeError(f"bridge unreachable: {type(e).__name__}: {e}") from e
        if resp.status_code != 200:
            code, message = _error_of(_json_or_none(resp))
            raise BridgeError(f"GET {path}: HTTP {resp.status_code} {code or ''} {message}".strip())
        try:
            return safejson.loads(resp.content)
        except ValueError as e:
            raise BridgeError(f"GET {path}: answer is not JSON") from e


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return safejson.loads(resp.content)
    except ValueError:
        return None


def _error_of(data: Any) -> tuple[str | None, str]:
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, dict):
        return (None if detail.get("code") is None else str(detail["code"])), str(detail.get("message", ""))
    return None, "" if detail is None else str(detail)[:200]


class BridgeLeases:
    """Leases from the bridge; None (keep what is metered) when the bridge cannot answer."""

    def __init__(self, client: BridgeClient, node_id: int) -> None:
        self._client = client
        self._node_id = node_id

    def active_leases(self) -> list[LeaseInfo] | None:
        try:
            return self._client.active_leases(self._node_id)
        except BridgeError as e:
            log.warning("cannot refresh leases: %s", e)
            return None


class StaticLeases:
    """A fixed lease list (from the config file), for running without the bridge."""

    def __init__(self, leases: Sequence[LeaseInfo]) -> None:
        self._leases = list(leases)

    def active_leases(self) -> list[LeaseInfo] | None:
        return list(self._leases)
