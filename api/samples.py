"""Raw samples at rest: packed fixed-width records, content-addressed by the report's samples root."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ledger.protocol import MerkleTree, Sample, sample_leaf

# gpuIndex u16, tsMs u64, gpuUtilBps u16, memUtilBps u16, powerMw u32, energyMj u64, memUsedMiB u32, flags u32
_RECORD = struct.Struct(">HQHHIQII")


def pack_samples(samples: Sequence[Sample]) -> bytes:
    return b"".join(_RECORD.pack(*s.values()) for s in samples)


def unpack_samples(data: bytes) -> list[Sample]:
    return [Sample(*vals) for vals in _RECORD.iter_unpack(data)]


def sample_with_proof(samples: Sequence[Sample], index: int) -> tuple[Sample, bytes, list[bytes]]:
    """(sample, leaf, proof) of the sample at ``index`` in submission order; IndexError when out of range."""
    return samples_with_proofs(samples, [index])[0]


def samples_with_proofs(samples: Sequence[Sample], indices: Sequence[int]) -> list[tuple[Sample, bytes, list[bytes]]]:
    """:func:`sample_with_proof` for many indices, building the tree once; IndexError names the first
    index out of range."""
    for i in indices:
        if i < 0 or i >= len(samples):
            raise IndexError(i)
    tree = MerkleTree.of_samples(samples)
    out = []
    for i in indices:
        leaf = sample_leaf(samples[i])
        out.append((samples[i], leaf, tree.proof(leaf)))
    return out
