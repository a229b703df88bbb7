"""A raw sample of one GPU and the Merkle commitment of a window's samples (OpenZeppelin StandardMerkleTree).

A report commits to its window's samples by ``samplesRoot``; anyone holding the samples rebuilds the root,
and anyone holding one sample and its proof checks it against the signed root. Leaves are
``keccak256(bytes.concat(keccak256(abi.encode(values))))`` with the types of :data:`SAMPLE_LEAF_TYPES`;
the tree sorts its leaves, so the root does not commit to the order in which samples are listed (the
order rule of a report's samples is stated in docs/protocol.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Sequence

from .crypto import ZERO_HASH, keccak256 as _keccak
from .errors import ProtocolError

UINT_BITS = {"uint16": 16, "uint32": 32, "uint64": 64, "uint256": 256}
"""Bit widths of the ABI integer types the protocol uses."""

# A raw sample, the leaf of a report's Merkle tree (OpenZeppelin StandardMerkleTree with these types).
SAMPLE_LEAF_TYPES: tuple[str, ...] = (
    "uint16",  # gpuIndex: position of the GPU in the node's registered GPU list
    "uint64",  # tsMs
    "uint16",  # gpuUtilBps
    "uint16",  # memUtilBps
    "uint32",  # powerMw
    "uint64",  # energyMj: the GPU's total-energy counter
    "uint32",  # memUsedMiB
    "uint32",  # flags (ReportFlag bits)
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one GPU. Missing fields (NotSupported) are 0 with FIELD_NOT_SUPPORTED in flags."""

    gpuIndex: int
    tsMs: int
    gpuUtilBps: int
    memUtilBps: int
    powerMw: int
    energyMj: int
    memUsedMiB: int
    flags: int

    def values(self) -> tuple[int, ...]:
        return (
            self.gpuIndex,
            self.tsMs,
            self.gpuUtilBps,
            self.memUtilBps,
            self.powerMw,
            self.energyMj,
            self.memUsedMiB,
            self.flags,
        )

    def to_list(self) -> list[int]:
        return list(self.values())

    @classmethod
    def from_values(cls, values: Sequence[int]) -> "Sample":
        if len(values) != len(SAMPLE_LEAF_TYPES):
            raise ProtocolError(f"a sample has {len(SAMPLE_LEAF_TYPES)} fields, got {len(values)}")
        for v, t in zip(values, SAMPLE_LEAF_TYPES):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 1 << UINT_BITS[t]:
                raise ProtocolError(f"sample field {v!r} does not fit {t}")
        return cls(*values)


SAMPLE_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Sample))


# abi.encode of static uints of at most 64 bits: one 32-byte big-endian word each (24 zero bytes + 8).
_SAMPLE_WORDS = struct.Struct(">" + "24xQ" * len(SAMPLE_LEAF_TYPES))
_SAMPLE_LIMITS: tuple[int, ...] = tuple(1 << UINT_BITS[t] for t in SAMPLE_LEAF_TYPES)
assert SAMPLE_LEAF_TYPES == ("uint16", "uint64", "uint16", "uint16", "uint32", "uint64", "uint32", "uint32")


def sample_leaf(sample: Sample) -> bytes:
    """OpenZeppelin standard leaf: keccak256(bytes.concat(keccak256(abi.encode(values)))).

    Raises :class:`ProtocolError` when a field does not fit its type.
    """
    values = sample.values()
    g, ts, gu, mu, p, e, mem, f = values
    # One test for the leaf types (u16, u64, u16, u16, u32, u64, u32, u32); a negative value shifts to -1.
    if (g | gu | mu) >> 16 or (p | mem | f) >> 32 or (ts | e) >> 64:
        bad = next(v for v, limit in zip(values, _SAMPLE_LIMITS) if not 0 <= v < limit)
        raise ProtocolError(f"sample field {bad!r} does not fit its type")
    return _keccak(_keccak(_SAMPLE_WORDS.pack(*values)))


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return _keccak(a + b) if a < b else _keccak(b + a)


class MerkleTree:
    """The tree OpenZeppelin's ``StandardMerkleTree.of(values, types)`` builds (leaves sorted by hash).

    Root and proofs are byte-for-byte those of ``@openzeppelin/merkle-tree`` and verify with
    ``MerkleProof.verify`` on-chain.
    """

    __slots__ = ("_tree", "_leaf_pos")

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ProtocolError("a Merkle tree needs at least one leaf")
        ordered = sorted(leaves)
        n = len(ordered)
        tree: list[bytes] = [b""] * (2 * n - 1)
        for i, leaf in enumerate(ordered):
            tree[len(tree) - 1 - i] = leaf
        for i in range(len(tree) - 1 - n, -1, -1):
            tree[i] = _hash_pair(tree[2 * i + 1], tree[2 * i + 2])
        self._tree = tree
        self._leaf_pos = {leaf: len(tree) - 1 - i for i, leaf in enumerate(ordered)}

    @classmethod
    def of_samples(cls, samples: Sequence[Sample]) -> "MerkleTree":
        return cls([sample_leaf(s) for s in samples])

    @property
    def root(self) -> bytes:
        return self._tree[0]

    def proof(self, leaf: bytes) -> list[bytes]:
        """Sibling hashes from ``leaf`` up to the root; raises KeyError for a leaf not in the tree."""
        i = self._leaf_pos[leaf]
        out: list[bytes] = []
        while i > 0:
            sibling = i - 1 if i % 2 == 0 else i + 1
            out.append(self._tree[sibling])
            i = (i - 1) // 2
        return out


def samples_root(samples: Sequence[Sample]) -> bytes:
    """Merkle root of a window's samples; ZERO_HASH for a window without samples."""
    if not samples:
        return ZERO_HASH
    # MerkleTree's layout without the proof index: leaves sorted, reversed at the end of the array.
    ordered = sorted(sample_leaf(s) for s in samples)
    n = len(ordered)
    tree = [b""] * (n - 1) + ordered[::-1]
    k = _keccak
    for i in range(n - 2, -1, -1):
        a, b = tree[2 * i + 1], tree[2 * i + 2]
        tree[i] = k(a + b) if a < b else k(b + a)
    return tree[0]


def verify_proof(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """Same rule as OpenZeppelin ``MerkleProof.verify``."""
    h = leaf
    for p in proof:
        h = _hash_pair(h, p)
    return h == root
