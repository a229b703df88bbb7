"""A sample of one GPU over one interval, and the Merkle commitment of a window's samples (OpenZeppelin
StandardMerkleTree).

A sample summarises one GPU over one sampling interval ``(tsMs − intervalMs, tsMs]`` from the driver's own
measurements: how much of the interval the driver's utilization samples covered and how much of it the GPU
was busy (``busyMs``, from NVML's 200 ms utilization sample buffer, so every instant counts once whatever
the attestor's own cadence), how much of it its SMs and tensor cores were active (GPM), its mean power, its
energy counter where the attestor read it, its memory in use. Missing figures are 0 with a
:class:`SampleField` bit (never a zero reading). Every figure is an integer.

A report commits to its window's samples by ``samplesRoot``; anyone holding the samples rebuilds the root,
and anyone holding one sample and its proof checks it against the signed root. Leaves are
``keccak256(bytes.concat(keccak256(abi.encode(values))))`` with the types of :data:`SAMPLE_LEAF_TYPES`; the
tree sorts its leaves, so the root does not commit to the order samples are listed in. The protocol's order
rule (docs/protocol.md): a report's samples are listed by (tsMs, gpuIndex); a window's aggregates do not
depend on the order, and nor does anything an auditor checks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntFlag
from typing import Sequence

from .crypto import ZERO_HASH, keccak256 as _keccak
from .errors import ProtocolError

UINT_BITS = {"uint16": 16, "uint32": 32, "uint64": 64, "uint256": 256}
"""Bit widths of the ABI integer types the protocol uses."""


class SampleField(IntFlag):
    """Sample-only flag bits (16..): which figure is missing (its value is 0). With ``FIELD_NOT_SUPPORTED``
    (a report-level bit) when the GPU does not support it; alone when it could not be read this time or, for
    ``ENERGY_UNREAD``, was not read by design (the counter is read where a window needs it)."""

    NONE = 0
    GPU_UTIL = 1 << 16  # coveredMs, busyMs and utilSamples are unknown
    MEM_UTIL = 1 << 17  # protocol 1 only: a protocol-2 sample never sets it (auditors refuse one that does)
    POWER = 1 << 18  # powerMw is unknown
    ENERGY = 1 << 19  # energyMj could not be read
    MEM_USED = 1 << 20  # memUsedMiB is unknown
    SM_ACTIVE = 1 << 21  # smActiveMs and tensorActiveMs are unknown (no GPM: pre-Hopper GPU, or GPM failed)
    ENERGY_UNREAD = 1 << 22  # energyMj was not read at this sample (read at window boundaries only)


# A sample, the leaf of a report's Merkle tree (OpenZeppelin StandardMerkleTree with these types), in order.
SAMPLE_FIELDS: tuple[tuple[str, str], ...] = (
    ("gpuIndex", "uint16"),  # position of the GPU in the node's registered GPU list
    ("tsMs", "uint64"),  # end of the interval (unix ms)
    ("intervalMs", "uint32"),  # the interval is (tsMs - intervalMs, tsMs]
    ("coveredMs", "uint32"),  # ms of the interval covered by the driver's utilization samples
    ("busyMs", "uint32"),  # ms of the interval the GPU was busy, per those samples (<= coveredMs)
    ("utilSamples", "uint16"),  # driver utilization samples that fell in the interval
    ("smActiveMs", "uint32"),  # GPM SM activity x interval: SM-active GPU-ms
    ("tensorActiveMs", "uint32"),  # GPM tensor activity x interval
    ("powerMw", "uint32"),  # mean power over the interval (driver power samples, else a poll)
    ("powerSamples", "uint16"),  # driver power samples the mean is over (0: one poll)
    ("energyMj", "uint64"),  # the GPU's total-energy counter, where read (SampleField.ENERGY_UNREAD otherwise)
    ("memUsedMiB", "uint32"),  # framebuffer memory in use at tsMs
    ("flags", "uint32"),  # ReportFlag bits (low 16) and SampleField bits (16..)
)
SAMPLE_LEAF_TYPES: tuple[str, ...] = tuple(t for _, t in SAMPLE_FIELDS)
SAMPLE_FIELD_NAMES: tuple[str, ...] = tuple(n for n, _ in SAMPLE_FIELDS)


@dataclass(frozen=True, slots=True)
class Sample:
    """One GPU over one interval (fields: :data:`SAMPLE_FIELDS`)."""

    gpuIndex: int
    tsMs: int
    intervalMs: int
    coveredMs: int
    busyMs: int
    utilSamples: int
    smActiveMs: int
    tensorActiveMs: int
    powerMw: int
    powerSamples: int
    energyMj: int
    memUsedMiB: int
    flags: int

    @property
    def startMs(self) -> int:
        """Start of the interval (exclusive)."""
        return self.tsMs - self.intervalMs

    def values(self) -> tuple[int, ...]:
        return (
            self.gpuIndex,
            self.tsMs,
            self.intervalMs,
            self.coveredMs,
            self.busyMs,
            self.utilSamples,
            self.smActiveMs,
            self.tensorActiveMs,
            self.powerMw,
            self.powerSamples,
            self.energyMj,
            self.memUsedMiB,
            self.flags,
        )

    def to_list(self) -> list[int | str]:
        """The sample as JSON carries it: its values in leaf order, the 64-bit ones (``tsMs``, ``energyMj``)
        as decimal strings (JavaScript numbers are exact only up to 2^53)."""
        return [str(v) if UINT_BITS[t] > 53 else v for v, t in zip(self.values(), SAMPLE_LEAF_TYPES)]

    @classmethod
    def from_values(cls, values: Sequence[int | str]) -> "Sample":
        """From its values in leaf order (integers, or strings of decimal digits as :meth:`to_list` writes
        the wide ones); :class:`ProtocolError` names the field that does not fit."""
        if len(values) != len(SAMPLE_LEAF_TYPES):
            raise ProtocolError(f"a sample has {len(SAMPLE_LEAF_TYPES)} fields, got {len(values)}")
        out = []
        for v, (name, t) in zip(values, SAMPLE_FIELDS):
            if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 20:
                v = int(v)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 1 << UINT_BITS[t]:
                raise ProtocolError(f"sample field {name}={v!r} does not fit {t}")
            out.append(v)
        return cls(*out)


assert tuple(f.name for f in fields(Sample)) == SAMPLE_FIELD_NAMES

# abi.encode of static uints of at most 64 bits: one 32-byte big-endian word each (24 zero bytes + 8).
_SAMPLE_WORDS = struct.Struct(">" + "24xQ" * len(SAMPLE_LEAF_TYPES))
_SAMPLE_LIMITS: tuple[int, ...] = tuple(1 << UINT_BITS[t] for t in SAMPLE_LEAF_TYPES)
assert SAMPLE_LEAF_TYPES == (
    "uint16", "uint64", "uint32", "uint32", "uint32", "uint16", "uint32", "uint32", "uint32", "uint16", "uint64",
    "uint32", "uint32",
)


def sample_leaf(sample: Sample) -> bytes:
    """OpenZeppelin standard leaf: keccak256(bytes.concat(keccak256(abi.encode(values)))).

    Raises :class:`ProtocolError` when a field does not fit its type.
    """
    values = sample.values()
    g, ts, iv, cov, busy, n_util, sm, tensor, power, n_power, energy, mem, f = values
    # One test per width (checked against SAMPLE_LEAF_TYPES above); a negative value shifts to -1.
    if (g | n_util | n_power) >> 16 or (iv | cov | busy | sm | tensor | power | mem | f) >> 32 or (ts | energy) >> 64:
        name, bad = next((n, v) for (n, _), v, limit in zip(SAMPLE_FIELDS, values, _SAMPLE_LIMITS) if not 0 <= v < limit)
        raise ProtocolError(f"sample field {name}={bad!r} does not fit its type")
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
