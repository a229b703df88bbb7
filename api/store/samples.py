"""Raw samples at rest: packed fixed-width records (54 bytes each), content-addressed by the report's samples
root.

The record is the sample's 13 fields in leaf order (ledger.protocol.samples.SAMPLE_FIELDS), big-endian, each
at its ABI width: a month of one GPU sampled every 18 s is 144,000 records, 7.8 MB.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ledger.protocol import Sample
from ledger.protocol.samples import SAMPLE_FIELDS

_FORMAT = {"uint16": "H", "uint32": "I", "uint64": "Q"}
_RECORD = struct.Struct(">" + "".join(_FORMAT[t] for _, t in SAMPLE_FIELDS))
RECORD_BYTES = _RECORD.size


def pack_samples(samples: Sequence[Sample]) -> bytes:
    return b"".join(_RECORD.pack(*s.values()) for s in samples)


def unpack_samples(data: bytes) -> list[Sample]:
    if len(data) % RECORD_BYTES:
        raise ValueError(f"packed samples of {len(data)} bytes are not whole {RECORD_BYTES}-byte records")
    return [Sample(*vals) for vals in _RECORD.iter_unpack(data)]
