"""Request and response models shared by the routers. Money in wei: integers in requests, decimal strings
in responses (JSON readers in other languages lose digits above 2**53)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from eth_utils import is_hex_address, to_checksum_address


def _address(v: str) -> str:
    # any case is accepted (the pattern is what the OpenAPI document can promise); stored checksummed
    if not is_hex_address(v):
        raise ValueError("not an EVM address")
    return str(to_checksum_address(v))


def _hex32(v: str) -> str:
    s = v[2:] if v.startswith("0x") else ""
    if len(s) != 64 or any(c not in "0123456789abcdefABCDEF" for c in s):
        raise ValueError("must be 0x followed by 64 hex digits")
    return "0x" + s.lower()


ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
Address = Annotated[str, Field(pattern=ADDRESS_PATTERN, examples=["0x" + "11" * 20]), AfterValidator(_address)]
Hex32 = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$"), AfterValidator(_hex32)]
Uint256 = Annotated[int, Field(ge=0, lt=2**256)]
Uint64 = Annotated[int, Field(ge=0, lt=2**64)]
PositiveUint64 = Annotated[int, Field(ge=1, lt=2**64)]
Id = Annotated[int, Field(ge=0, lt=2**63)]
ETH = "0x0000000000000000000000000000000000000000"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventOut(BaseModel):
    contract: str
    name: str
    args: dict[str, Any] = Field(description="the event's arguments: integers as decimal strings, addresses and "
                                 "bytes as 0x-hex, booleans as booleans")
    blockNumber: int
    txHash: str
    logIndex: int


class UnsignedTx(BaseModel):
    """A transaction for a wallet to sign, exactly as eth-account / web3.py sign it
    (``Account.sign_transaction(unsignedTx, key)``), then submit with ``POST /v1/tx``. Quantities are 0x-hex
    (JSON-safe at any size); ``nonce`` and ``chainId`` are numbers; fee fields are either ``gasPrice`` or
    ``maxFeePerGas`` + ``maxPriorityFeePerGas`` (absent, never null)."""

    to: str
    data: str
    value: str
    gas: str
    nonce: int
    chainId: int
    type: int = Field(description="2: EIP-1559 fees; 0: legacy gasPrice")
    sender: str = Field(alias="from")
    gasPrice: str | None = None
    maxFeePerGas: str | None = None
    maxPriorityFeePerGas: str | None = None

    model_config = ConfigDict(populate_by_name=True)

    @model_serializer(mode="wrap")
    def _no_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class EthersTx(BaseModel):
    """The same transaction as ethers v6 signs it (``wallet.signTransaction(ethersTx)``): ``gasLimit`` where
    eth-account says ``gas``."""

    to: str
    data: str
    value: str
    gasLimit: str
    nonce: int
    chainId: int
    type: int
    sender: str = Field(alias="from")
    gasPrice: str | None = None
    maxFeePerGas: str | None = None
    maxPriorityFeePerGas: str | None = None

    model_config = ConfigDict(populate_by_name=True)

    @model_serializer(mode="wrap")
    def _no_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ActionOut(BaseModel):
    """The outcome of a write: mined (managed account or relayed wallet transaction) or to be signed."""

    status: Literal["mined", "unsigned"]
    txHash: str | None = None
    blockNumber: int | None = None
    events: list[EventOut] = Field(default_factory=list)
    result: dict[str, Any] = Field(default_factory=dict, description="ids created (nodeId, offerId, leaseId, ...)")
    unsignedTx: UnsignedTx | None = Field(default=None, description="for eth-account / web3.py, as is")
    ethersTx: EthersTx | None = Field(default=None, description="the same transaction for ethers v6, as is")


class AccountIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"roles": ["buyer"], "label": "lab-7"}]})
    roles: list[Literal["provider", "buyer", "auditor", "arbiter", "issuer"]] = Field(
        min_length=1,
        max_length=4,
        description="arbiter: resolves disputes (the escrow's ARBITER_ROLE; granted on dev chains, else by the "
        "escrow's admin); issuer: runs compute-voucher programmes (the voucher vault's ISSUER_ROLE, likewise)",
    )
    label: str = Field(default="", max_length=128)


class AccountCreated(BaseModel):
    address: str
    roles: list[str]
    apiKey: str = Field(description="shown once; the bridge keeps only its hash")
    notes: list[str] = Field(default_factory=list, description="what else was done or is still needed")


class AccountOut(BaseModel):
    address: str
    roles: list[str]
    kind: str
    label: str
    ethBalanceWei: str


class FaucetIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"address": "0x7b57A8745EA0CDa19EA7bb7d1fafA83B95291f10"}]})
    address: Address
    amountWei: Uint256 | None = Field(default=None, description="default: the configured faucet amount")
    token: Address = Field(default=ETH, description="ETH (zero address) or the dev token (GET /v1/tokens)")


class RawTxIn(Strict):
    rawTransaction: str = Field(min_length=4, max_length=262_144, pattern=r"^0x[0-9a-fA-F]+$")
