"""Raw samples at rest, content-addressed by the report's samples root (the Merkle root over them: two reports
with the same samples share one stored set).

Two encodings:

* ``CODEC_RAW`` (0): packed fixed-width records (54 bytes each), the sample's 13 fields in leaf order
  (ledger.protocol.samples.SAMPLE_FIELDS), big-endian, each at its ABI width; how the verifier processes
  hand samples over, and how stores before revision 0006 hold them;
* ``CODEC_ZLIB_COLUMNS`` (1): the same values field by field (a column per field, ``tsMs`` as the difference
  from the previous sample's), zlib-compressed: about 19 bytes a sample for an 8-GPU report of a busy node
  (bench/scale.py), against 54.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from ledger.protocol import Sample
from ledger.protocol.samples import SAMPLE_FIELDS

CODEC_RAW = 0
CODEC_ZLIB_COLUMNS = 1

_FORMAT = {"uint16": "H", "uint32": "I", "uint64": "Q"}
_RECORD = struct.Struct(">" + "".join(_FORMAT[t] for _, t in SAMPLE_FIELDS))
RECORD_BYTES = _RECORD.size
_TS = [name for name, _ in SAMPLE_FIELDS].index("tsMs")
_U64 = 2**64


def pack_samples(samples: Sequence[Sample]) -> bytes:
    return b"".join(_RECORD.pack(*s.values()) for s in samples)


def unpack_samples(data: bytes) -> list[Sample]:
    if len(data) % RECORD_BYTES:
        raise ValueError(f"packed samples of {len(data)} bytes are not whole {RECORD_BYTES}-byte records")
    return [Sample(*vals) for vals in _RECORD.iter_unpack(data)]


def encode_samples(samples: Sequence[Sample]) -> bytes:
    """``CODEC_ZLIB_COLUMNS``."""
    n = len(samples)
    columns = list(zip(*(s.values() for s in samples))) if n else [() for _ in SAMPLE_FIELDS]
    parts = []
    for j, (_, typ) in enumerate(SAMPLE_FIELDS):
        col: Sequence[int] = columns[j]
        if j == _TS:
            col = [(v - p) % _U64 for v, p in zip(col, (0, *col[:-1]))]
        parts.append(struct.pack(f">{n}{_FORMAT[typ]}", *col))
    return zlib.compress(b"".join(parts), 6)


def decode_samples(data: bytes, codec: int) -> list[Sample]:
    if codec == CODEC_RAW:
        return unpack_samples(data)
    if codec != CODEC_ZLIB_COLUMNS:
        raise ValueError(f"unknown samples codec {codec}")
    raw = zlib.decompress(data)
    if len(raw) % RECORD_BYTES:
        raise ValueError(f"encoded samples of {len(raw)} bytes are not whole {RECORD_BYTES}-byte records")
    n = len(raw) // RECORD_BYTES
    columns: list[tuple[int, ...]] = []
    offset = 0
    for j, (_, typ) in enumerate(SAMPLE_FIELDS):
        fmt = struct.Struct(f">{n}{_FORMAT[typ]}")
        col = fmt.unpack_from(raw, offset)
        offset += fmt.size
        if j == _TS:
            acc, out = 0, []
            for d in col:
                acc = (acc + d) % _U64
                out.append(acc)
            col = tuple(out)
        columns.append(col)
    return [Sample(*vals) for vals in zip(*columns)]
