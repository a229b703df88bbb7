"""The protocol's JSON rule: integers wider than 53 bits travel as decimal strings (JavaScript numbers are exact
only up to 2^53), narrower ones as numbers; readers take either, and nothing else."""

from __future__ import annotations

import json

import pytest

from ledger.protocol import MeteringReport, ProtocolError, Sample
from ledger.protocol.report import REPORT_FIELDS, uint_of_json

REPORT = MeteringReport(
    leaseId=2**200 + 7, seq=2**60 + 1, prevReportHash=b"\x01" * 32, windowEndMs=2**53 + 1, cumBusyMs=2**63,
    cumEnergyMj=5, cumAllocatedMs=6, cumSmActiveMs=7, windowStartMs=8, gpuSetHash=b"\x02" * 32, busyMs=9,
    smActiveMs=10, tensorActiveMs=11, energyMj=12, allocatedMs=13, maxMemUsedMiB=2**32 - 1, sampleCount=15,
    samplesRoot=b"\x03" * 32, flags=2**31, configHash=b"\x04" * 32,
)  # fmt: skip


def test_wide_integers_are_decimal_strings_and_survive_a_javascript_style_round_trip() -> None:
    j = REPORT.to_json()
    for name, typ in REPORT_FIELDS:
        if typ in ("uint64", "uint256"):
            assert j[name] == str(getattr(REPORT, name))
        elif typ.startswith("uint"):
            assert j[name] == getattr(REPORT, name) and isinstance(j[name], int)
    # a parser that turns every JSON number into a double (JavaScript) loses nothing
    lossy = json.loads(json.dumps(j), parse_int=float)
    restored = {k: int(v) if isinstance(v, float) else v for k, v in lossy.items()}
    assert MeteringReport.from_json(restored) == REPORT
    s = Sample(1, 2**60, 18_000, 18_000, 9_000, 90, 8_000, 7_000, 700_000, 120, 2**62 + 3, 40_000, 2**22)
    wire = s.to_list()
    assert wire[1] == str(2**60) and wire[10] == str(2**62 + 3) and all(isinstance(v, int) for v in wire[2:10])
    assert Sample.from_values(json.loads(json.dumps(wire))) == s


def test_readers_take_numbers_or_digit_strings_and_nothing_else() -> None:
    assert MeteringReport.from_json({**REPORT.to_json(), "cumEnergyMj": "5"}) == REPORT
    assert MeteringReport.from_json({**REPORT.to_json(), "seq": 2**60 + 1}) == REPORT
    for bad in ("-1", "1e3", " 1", "0x10", "１２", 1.0, True, None, "9" * 79):
        with pytest.raises(ProtocolError):
            uint_of_json(bad, "seq")
        with pytest.raises(ProtocolError):
            MeteringReport.from_json({**REPORT.to_json(), "seq": bad})
    with pytest.raises(ProtocolError, match="tsMs"):
        Sample.from_values([0, "-5", 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    with pytest.raises(ProtocolError, match="energyMj"):
        Sample.from_values([0, 5, 1, 1, 1, 1, 1, 1, 1, 1, str(2**64), 1, 1])
