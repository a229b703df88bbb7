"""Raw samples at rest: packed fixed-width records, content-addressed by the report's samples root."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ledger.protocol import Sample

# gpuIndex u16, tsMs u64, gpuUtilBps u16, memUtilBps u16, powerMw u32, energyMj u64, memUsedMiB u32, flags u32
_RECORD = struct.Struct(">HQHHIQII")


def pack_samples(samples: Sequence[Sample]) -> bytes:
    return b"".join(_RECORD.pack(*s.values()) for s in samples)


def unpack_samples(data: bytes) -> list[Sample]:
    return [Sample(*vals) for vals in _RECORD.iter_unpack(data)]
