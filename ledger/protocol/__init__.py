"""The protocol layer: pure Python, no web3, HTTP or database.

Report type and EIP-712 hashing (:mod:`.report`), samples and their Merkle commitment (:mod:`.samples`),
hashing and signature recovery (:mod:`.crypto`), the window aggregation rule (:mod:`.metering`),
settlement words and calldata (:mod:`.settlement`), the money rules (:mod:`.economics`) and JSON parsing
for input from other parties (:mod:`.safejson`). Every other layer calls these; none repeats them.
The names most callers need are re-exported here.
"""

from .crypto import SECP256K1_HALF_N, SECP256K1_N, ZERO_HASH, keccak256, recover_signer
from .errors import LedgerError, ProtocolError
from .report import (
    DOMAIN_NAME,
    DOMAIN_TYPE_STRING,
    DOMAIN_TYPEHASH,
    DOMAIN_VERSION,
    EIP712_REPORT_TYPES,
    REPORT_CORE_FIELDS,
    REPORT_FIELDS,
    REPORT_TYPE_STRING,
    REPORT_TYPEHASH,
    WINDOW_FIELDS,
    WINDOW_TYPE_STRING,
    WINDOW_TYPEHASH,
    MeteringReport,
    ReportFlag,
    config_hash,
    domain_separator,
    gpu_set_hash,
    gpu_uuid_hash,
    hex_to_bytes32,
    report_digest,
    report_struct_hash,
    report_typed_message,
    typed_data_digest,
    window_struct_hash,
)
from .samples import SAMPLE_FIELD_NAMES, SAMPLE_LEAF_TYPES, MerkleTree, Sample, sample_leaf, samples_root, verify_proof

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_TYPEHASH",
    "DOMAIN_TYPE_STRING",
    "DOMAIN_VERSION",
    "EIP712_REPORT_TYPES",
    "REPORT_CORE_FIELDS",
    "REPORT_FIELDS",
    "REPORT_TYPEHASH",
    "REPORT_TYPE_STRING",
    "SAMPLE_FIELD_NAMES",
    "SAMPLE_LEAF_TYPES",
    "SECP256K1_HALF_N",
    "SECP256K1_N",
    "WINDOW_FIELDS",
    "WINDOW_TYPEHASH",
    "WINDOW_TYPE_STRING",
    "ZERO_HASH",
    "LedgerError",
    "MerkleTree",
    "MeteringReport",
    "ProtocolError",
    "ReportFlag",
    "Sample",
    "config_hash",
    "domain_separator",
    "gpu_set_hash",
    "gpu_uuid_hash",
    "hex_to_bytes32",
    "keccak256",
    "recover_signer",
    "report_digest",
    "report_struct_hash",
    "report_typed_message",
    "sample_leaf",
    "samples_root",
    "typed_data_digest",
    "verify_proof",
    "window_struct_hash",
]
