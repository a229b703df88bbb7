"""Samples at rest: compressed (api.store.samples, codec 1) and content-addressed by the samples root; the
archive segments retention writes (api.store.archive)."""

from __future__ import annotations

import random
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from bridge_helpers import busy_node_samples, new_account, submission
from test_api_flow import PRICE, attestor_for, open_and_activate, services, setup_provider

from alembic import command

from api.store import Store
from api.store.archive import SampleArchive, archive_entry
from api.store.migrations.runner import alembic_config
from api.store.models import SampleSet
from api.store.samples import CODEC_RAW, CODEC_ZLIB_COLUMNS, decode_samples, encode_samples, pack_samples
from ledger.protocol import Sample


def _busy_node_samples(rng: random.Random, reports: int = 1) -> list[Sample]:
    return [s for k in range(reports) for s in busy_node_samples(rng, 1_764_000_000_000 + k * 180_000)]


def test_codec_round_trips_every_value_and_compresses_a_busy_report() -> None:
    rng = random.Random(5)
    extremes = [Sample(65_535, 2**64 - 1, 2**32 - 1, 0, 0, 65_535, 2**32 - 1, 0, 2**32 - 1, 0, 2**64 - 1, 0, 2**32 - 1),
                Sample(0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)]  # fmt: skip
    for samples in ([], extremes, extremes[::-1], _busy_node_samples(rng, 3)):
        assert decode_samples(encode_samples(samples), CODEC_ZLIB_COLUMNS) == samples
        assert decode_samples(pack_samples(samples), CODEC_RAW) == samples  # stores before 0006
    report = _busy_node_samples(rng)
    assert len(encode_samples(report)) < 0.45 * len(pack_samples(report))


def test_intake_stores_samples_compressed_and_once_per_root(bridge: TestClient) -> None:
    client = bridge
    prov = setup_provider(client, ["GPU-st-1", "GPU-st-2"], PRICE)
    _, bkey = new_account(client, "buyer")
    lease_id = open_and_activate(client, bkey, prov, "storage")
    att = attestor_for(client, prov, lease_id)
    r, sig, smp = att.next_report()
    assert client.post("/v1/metering/reports", json=submission(prov["nodeId"], r, sig, smp)).status_code == 201
    store = services(client).store
    with store.db.session() as s:
        sets = list(s.scalars(select(SampleSet)))
    assert [(x.root, x.codec, x.count) for x in sets] == [("0x" + r.samplesRoot.hex(), CODEC_ZLIB_COLUMNS, len(smp))]
    assert decode_samples(sets[0].data, sets[0].codec) == smp
    served = client.get(f"/v1/leases/{lease_id}/reports").json()["reports"][0]["samples"]
    assert served == [x.to_list() for x in smp]


def test_archive_segments_are_the_audit_archive_format(tmp_path: Path) -> None:
    rng = random.Random(9)
    samples = _busy_node_samples(rng)
    body = '{"leaseId":"3","seq":"%d"}'
    archive = SampleArchive(tmp_path)
    entries = [archive_entry(body % seq, "0x01", "0x02", 4, samples if seq == 2 else None) for seq in (1, 2, 3)]
    name = archive.write(3, entries)
    assert name == "lease-3/000000000001-000000000003.jsonl.gz" and not list(tmp_path.rglob("*.tmp"))
    assert archive.samples(name, 2) == samples and archive.samples(name, 1) == []
    assert SampleArchive(tmp_path).segment(name)[3] == entries[2]


def test_migration_0006_keeps_packed_samples_readable(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{(tmp_path / 'old.sqlite3').as_posix()}", archive_dir=tmp_path / "archive")
    cfg = alembic_config()
    with store.db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    samples = _busy_node_samples(random.Random(2))
    with store.db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO sample_sets (root, count, data) VALUES ('0x04', ?, ?)",
                             (len(samples), pack_samples(samples)))  # fmt: skip
        conn.exec_driver_sql(
            "INSERT INTO reports (lease_id, seq, struct_hash, signer, signature, body, samples_root, window_end_ms,"
            " cum_billable, status, accepted_ms) VALUES (1, 1, '0x01', '0x02', '0x03', '{}', '0x04', 5, 6, 'settled', 7)"
        )
    store.migrate()
    found = store.reports.get(1, 1)
    assert found is not None and found[0].archive is None and found[1] == samples
    store.close()
