"""The NVML source over a fake pynvml module handed in through the constructor."""

from __future__ import annotations

import pytest
from fake_pynvml import NOT_SUPPORTED, FakeGpu, FakeNvml

from attestor.errors import GpuNotFoundError, NoDriverError
from attestor.nvml import NO_DRIVER_MESSAGE, NvmlSource
from attestor.sampler import Sampler
from ledger.protocol.metering import SampleField
from ledger.protocol import ReportFlag

UUIDS = ["GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-0000-0000-0000-000000000001"]


def _fake(**kw: object) -> FakeNvml:
    return FakeNvml([FakeGpu(UUIDS[0]), FakeGpu(UUIDS[1], util_gpu=97, power_mw=650_000, energy_mj=9_000_000)], **kw)  # type: ignore[arg-type]


def test_nvml_reads_fields_in_protocol_units() -> None:
    fake = _fake()
    src = NvmlSource(UUIDS, nvml=fake)
    r0, r1 = src.read_all(0)
    assert (r0.index, r0.gpu_util_bps, r0.mem_util_bps, r0.power_mw, r0.energy_mj, r0.mem_used_mib, r0.processes) == (
        0,
        5_000,
        2_000,
        350_000,
        5_000_000,
        10_240,
        1,
    )
    assert (r1.gpu_util_bps, r1.power_mw, r1.energy_mj) == (9_700, 650_000, 9_000_000)
    assert r0.flags == 0 and r1.flags == 0
    assert src.driver_version == "570.86.15" and src.nvml_version == "12.570.86.15"
    assert list(src.model_names) == ["NVIDIA H100 80GB HBM3"] * 2
    assert not src.simulated


def test_nvml_looks_gpus_up_by_uuid_in_configured_order() -> None:
    fake = _fake()
    src = NvmlSource([UUIDS[1], UUIDS[0]], nvml=fake)
    r0, r1 = src.read_all(0)
    # index 0 is the second physical GPU: the configured (registered) order wins over NVML's enumeration
    assert r0.gpu_util_bps == 9_700 and r1.gpu_util_bps == 5_000
    assert list(src.uuids) == [UUIDS[1], UUIDS[0]]


def test_nvml_unknown_uuid_raises_gpu_not_found() -> None:
    fake = _fake()
    with pytest.raises(GpuNotFoundError, match="GPU-cccc"):
        NvmlSource([UUIDS[0], "GPU-cccc"], nvml=fake)
    assert fake.shutdown_called


def test_nvml_missing_library_raises_no_driver() -> None:
    with pytest.raises(NoDriverError) as e:
        NvmlSource(UUIDS, nvml=_fake(library_missing=True))
    assert str(e.value) == NO_DRIVER_MESSAGE == "no NVIDIA driver found; use --simulate"


def test_nvml_not_supported_field_is_flagged_not_zero_and_not_asked_again() -> None:
    fake = _fake()
    fake.gpus[0].energy_mj = NOT_SUPPORTED
    fake.gpus[0].util_gpu = NOT_SUPPORTED
    src = NvmlSource(UUIDS, nvml=fake)
    sampler = Sampler(src)
    s0, s1 = sampler.tick(1_000)
    assert s0.flags & ReportFlag.FIELD_NOT_SUPPORTED
    assert s0.flags & SampleField.ENERGY and s0.flags & SampleField.GPU_UTIL
    assert not s0.flags & SampleField.POWER
    assert (s0.energyMj, s0.gpuUtilBps, s0.powerMw) == (0, 0, 350_000)
    assert s1.flags == 0 and s1.energyMj == 9_000_000
    sampler.tick(2_000)
    assert fake.gpus[0].calls["energy"] == 1 and fake.gpus[0].calls["util"] == 1
    assert fake.gpus[1].calls["energy"] == 2


def test_nvml_lost_gpu_gives_flagged_empty_reading() -> None:
    fake = _fake()
    src = NvmlSource(UUIDS, nvml=fake)
    fake.gpus[1].lost = True
    sampler = Sampler(src)
    s0, s1 = sampler.tick(1_000)
    assert s0.flags == 0
    assert s1.flags & ReportFlag.GPU_LOST
    assert (s1.gpuUtilBps, s1.powerMw, s1.energyMj, s1.memUsedMiB) == (0, 0, 0, 0)
    assert s1.gpuIndex == 1 and s1.tsMs == 1_000


def test_nvml_energy_counter_going_backwards_flags_energy_reset() -> None:
    fake = _fake()
    src = NvmlSource(UUIDS, nvml=fake)
    sampler = Sampler(src)
    sampler.tick(1_000)
    fake.gpus[0].energy_mj = 5_400_000
    a, _ = sampler.tick(2_000)
    assert not a.flags & ReportFlag.ENERGY_RESET
    fake.gpus[0].energy_mj = 1_234  # driver reloaded
    b, other = sampler.tick(3_000)
    assert b.flags & ReportFlag.ENERGY_RESET and b.energyMj == 1_234
    assert not other.flags & ReportFlag.ENERGY_RESET


def test_nvml_new_uncorrected_ecc_errors_flag_ecc_error() -> None:
    fake = _fake()
    src = NvmlSource(UUIDS, nvml=fake)
    assert src.read_all(0)[0].flags == 0
    fake.gpus[0].ecc_uncorrected = 2
    assert src.read_all(1)[0].flags & ReportFlag.ECC_ERROR
    assert not src.read_all(2)[0].flags & ReportFlag.ECC_ERROR  # no new errors since


def test_nvml_ecc_unsupported_is_not_a_missing_sample_field() -> None:
    fake = _fake()
    fake.gpus[0].ecc_uncorrected = NOT_SUPPORTED
    s0, _ = Sampler(NvmlSource(UUIDS, nvml=fake)).tick(0)
    assert s0.flags == 0


def test_nvml_xid_events_map_to_health_flags() -> None:
    fake = _fake()
    src = NvmlSource(UUIDS, nvml=fake)
    fake.xid_queue += [(UUIDS[1], 79), (UUIDS[0], 48), (UUIDS[0], 13)]
    r0, r1 = src.read_all(0)
    assert r1.flags & ReportFlag.GPU_LOST
    assert r0.flags & ReportFlag.ECC_ERROR and not r0.flags & ReportFlag.GPU_LOST
    r0, r1 = src.read_all(1)
    assert r0.flags == 0 and r1.flags == 0


def test_nvml_without_xid_support_still_reads() -> None:
    src = NvmlSource(UUIDS, nvml=_fake(xid_supported=False))
    assert src.read_all(0)[0].gpu_util_bps == 5_000


def test_nvml_without_configured_order_enumerates() -> None:
    src = NvmlSource(None, nvml=_fake())
    assert list(src.uuids) == UUIDS


def test_nvml_close_shuts_down_once() -> None:
    fake = _fake()
    src = NvmlSource(UUIDS, nvml=fake)
    src.close()
    src.close()
    assert fake.shutdown_called


def test_nvml_transient_field_error_is_missing_for_that_reading_only() -> None:
    import pynvml

    fake = _fake()
    src = NvmlSource(UUIDS, nvml=fake)
    real = fake.nvmlDeviceGetPowerUsage
    answers: list[object] = [pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)]

    def flaky(h: FakeGpu) -> int:
        if answers and h is fake.gpus[0]:
            raise answers.pop()  # type: ignore[misc]
        return real(h)

    fake.nvmlDeviceGetPowerUsage = flaky  # type: ignore[method-assign]
    sampler = Sampler(src)
    first, _ = sampler.tick(1_000)
    second, _ = sampler.tick(2_000)
    assert first.flags & SampleField.POWER and first.powerMw == 0
    assert not second.flags & SampleField.POWER and second.powerMw == 350_000
