"""Every error code the bridge answers, with its HTTP status and what it means: the one table the OpenAPI
document and the README share (a test keeps both, and the code that raises them, in step).

Errors are ``{"detail": {"code", "message", "field", "details"}}``. The statuses follow one rule: 400 a
metering wire body that is malformed, 401 no or a bad key, 402 not enough funds, 403 not yours, 404 unknown,
409 the state does not allow it, 413 too large, 415 not JSON, 422 invalid (the field is named), 429 too many
requests, 5xx the bridge or the chain failed.
"""

from __future__ import annotations

ERROR_CODES: tuple[tuple[str, int, str], ...] = (
    ("invalid_report", 400, "metering wire: the body, a report field, a sample or the signature is malformed"),
    ("unauthorized", 401, "no API key (Authorization: Bearer …) or X-Wallet-Address, or an unknown key"),
    ("insufficient_funds", 402, "the sender cannot pay value + gas, or the escrow or rights needed (fund the "
     "account: dev chains POST /v1/faucet)"),
    ("forbidden", 403, "not yours: another party's lease, node or offer, or the contract's access rule"),
    ("missing_role", 403, "the account lacks the role (provider, buyer, arbiter, issuer; auditors only read)"),
    ("wrong_signer", 403, "metering: the report is not signed by the node's attestor, or the lease is not on that node"),
    ("not_found", 404, "the contract knows no such id"),
    ("unknown_account", 404, "no such account"),
    ("unknown_lease", 404, "no such lease (metering: maybe indexer lag, retry)"),
    ("unknown_node", 404, "no such node"),
    ("unknown_offer", 404, "no such offer"),
    ("unknown_provider", 404, "no such provider"),
    ("unknown_report", 404, "no such report of the lease"),
    ("unknown_sample", 404, "no such sample index in the report"),
    ("conflict", 409, "the lease or offer is in a state that does not allow it (the message says which)"),
    ("offer_expired", 409, "the offer's validity has passed"),
    ("approval_required", 409, "a wallet must first approve the ERC-20 pull: details.unsignedTx is the approve"),
    ("idempotency_key_reused", 409, "the Idempotency-Key was used with a different request"),
    ("idempotency_in_progress", 409, "a request with this Idempotency-Key is still running: retry"),
    ("idempotency_abandoned", 409, "a request with this Idempotency-Key was cut off by a restart, possibly after "
     "sending its transaction: check the chain before asking again with a new key"),
    ("idempotency_tx_unconfirmed", 409, "this Idempotency-Key's transaction was sent but its outcome is not known "
     "yet: retry later, never with a new key"),
    ("faucet_disabled", 409, "this chain has no faucet (not a dev chain)"),
    ("seq_conflict", 409, "metering: another report is stored for this seq"),
    ("seq_gap", 409, "metering: an earlier report is missing: send it first"),
    ("chain_mismatch", 409, "metering: prevReportHash is not the stored previous report's hash"),
    ("body_too_large", 413, "the request body is too large"),
    ("unsupported_media_type", 415, "the body is not JSON: send Content-Type: application/json"),
    ("validation_error", 422, "a field is invalid: detail.field names it"),
    ("invalid_json", 422, "the body is not valid JSON, or nested deeper than 64 levels"),
    ("unknown_token", 422, "not an ERC-20 the escrow can pull, or a token the faucet does not mint"),
    ("not_a_token", 422, "the address answers no ERC-20 call"),
    ("node_lacks_gpm", 422, "an SM-active offer on a node registered without GPM"),
    ("rejected_by_contract", 422, "the contract refused the call: details.error names its reason"),
    ("tx_rejected", 422, "the node refused the transaction (nonce, fee, …): nothing was sent"),
    ("invalid_transaction", 422, "POST /v1/tx: the raw transaction does not decode"),
    ("wrong_chain", 422, "POST /v1/tx: signed for another chain id"),
    ("foreign_destination", 422, "POST /v1/tx: the transaction is not for the ledger's contracts"),
    ("unsettleable_report", 422, "metering: a settlement entry cannot carry the report (a field above its width)"),
    ("samples_mismatch", 422, "metering: the samples do not match sampleCount / samplesRoot"),
    ("figures_mismatch", 422, "metering: the report's figures are not what its samples and chain give"),
    ("window_in_future", 422, "metering: the window ends after the chain's time (+30 s): check the attestor's clock"),
    ("rate_limited", 429, "too many requests from this client: wait Retry-After seconds"),
    ("no_key", 500, "the bridge holds no key for this account"),
    ("key_unreadable", 500, "the account's key cannot be decrypted (server secret changed?)"),
    ("store_unavailable", 503, "the bridge's database did not answer: retry"),
    ("chain_unavailable", 503, "the chain did not answer: retry"),
)

STATUS_OF: dict[str, int] = {code: status for code, status, _ in ERROR_CODES}


def markdown_table() -> str:
    """The table as the README and the OpenAPI description show it."""
    rows = ["| code | status | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{code}` | {status} | {meaning} |" for code, status, meaning in ERROR_CODES]
    return "\n".join(rows)
