"""Config file loading and lease validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestor.bridge import LeaseInfo
from attestor.config import load_config
from attestor.errors import ConfigError
from attestor.meter import LeaseSpec, SamplingPolicy
from ledger.protocol import gpu_set_hash, gpu_uuid_hash


def test_config_toml_reads_every_key(tmp_path: Path) -> None:
    p = tmp_path / "a.toml"
    p.write_text(
        'node_id = 3\napi = "http://127.0.0.1:8000"\nchain_id = 5\nescrow = "0xabc"\ngpus = ["GPU-a", "GPU-b"]\n'
        'sample_period_ms = 500\nwindow_ms = 30000\ndata_dir = "d"\nkeystore = "k.json"\n'
        "[[leases]]\nlease_id = 7\ngpu_indices = [1]\nstart_ms = 10\nend_ms = 20\n"
    )
    c = load_config(p)
    assert (c.node_id, c.api, c.chain_id, c.escrow, c.gpus) == (
        3,
        "http://127.0.0.1:8000",
        5,
        "0xabc",
        ("GPU-a", "GPU-b"),
    )
    assert (c.sample_period_ms, c.window_ms, c.data_dir, c.keystore) == (500, 30_000, Path("d"), Path("k.json"))
    assert c.leases == (LeaseInfo(7, (1,), 10, 20),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"nodeid": 1}', "unknown keys"),
        ('{"node_id": "1"}', "node_id must be an integer"),
        ('{"gpus": "GPU-a"}', "gpus must be a list"),
        ('{"leases": [{"lease_id": 1}]}', "leases\\[0\\] needs"),
        ("[1, 2]", "must be a table"),
        ("{", "does not parse"),
    ],
)
def test_config_rejects_bad_files_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "c.json"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


def test_lease_spec_computes_gpu_set_hash_and_validates() -> None:
    uuids = ["GPU-a", "GPU-b", "GPU-c"]
    spec = LeaseSpec.build(1, [2, 0, 2], 0, 10, uuids)
    assert spec.gpu_indices == (0, 2)
    assert spec.gpu_set_hash == gpu_set_hash([gpu_uuid_hash("GPU-c"), gpu_uuid_hash("GPU-a")])
    with pytest.raises(ConfigError, match="node has 3 GPUs"):
        LeaseSpec.build(1, [3], 0, 10, uuids)
    with pytest.raises(ConfigError, match="no GPUs"):
        LeaseSpec.build(1, [], 0, 10, uuids)
    with pytest.raises(ConfigError, match="ends before"):
        LeaseSpec.build(1, [0], 10, 10, uuids)


def test_sampling_policy_rejects_window_shorter_than_period() -> None:
    with pytest.raises(ConfigError):
        SamplingPolicy(sample_period_ms=1_000, window_ms=500)
    assert SamplingPolicy(1_000, 60_000).tolerance_ms == 500
