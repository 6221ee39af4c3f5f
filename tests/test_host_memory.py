"""Host memory of `cfcompile.offload` (hardening): exact pinned bytes in the store and the plan report, a refused
pin leaves the module as it was, and a host-memory check before anything is allocated.

The CPU has nothing to pin, so these tests turn pinning on for device="cpu" (`offload.pins`, from `pinned`) and stand in for the
CUDA runtime (`torch.cuda.cudart`): the real `pinned.pin` / `unpin` and offload's error handling run; only
cudaHostRegister / cudaHostUnregister are replaced.
"""

import gc
import importlib
import json
import sys

import pytest
import torch

import cfcompile
from cfcompile.offload import lookup, planned_layout, store_of
from toy import toy

off = importlib.import_module("cfcompile.offload")   # the module (cfcompile.offload is also the function)


class FakeCudart:
    """cudaHostRegister / cudaHostUnregister that record their calls; registration fails from call ``fail_at`` on."""

    def __init__(self, fail_at: int | None = None, code: int = 2):
        self.registered, self.unregistered, self.fail_at, self.code = [], [], fail_at, code

    def cudaHostRegister(self, ptr, nbytes, flags):
        if self.fail_at is not None and len(self.registered) >= self.fail_at:
            return self.code            # cudaErrorMemoryAllocation
        self.registered.append((ptr, nbytes))
        return 0

    def cudaHostUnregister(self, ptr):
        self.unregistered.append(ptr)
        return 0


@pytest.fixture
def cudart(monkeypatch):
    def make(**kw):
        fake = FakeCudart(**kw)
        monkeypatch.setattr(off, "pins", lambda device: True)
        monkeypatch.setattr(torch.cuda, "cudart", lambda: fake)
        return fake
    return make


def snapshot(m):
    return {n: (p, p.data_ptr()) for n, p in m.named_parameters()}


def assert_untouched(m, before, x, ref):
    assert store_of(m) is None
    assert {n: (p, p.data_ptr()) for n, p in m.named_parameters()} == before   # same objects, same memory
    assert all(lookup(p) is None for p in m.parameters())
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, rtol=0, atol=0)


def test_pinned_bytes_are_the_host_buffers_exactly_and_reach_the_plan_report(cudart, tmp_path):
    fake = cudart()
    m, x = toy()
    with torch.no_grad():
        ref = m(x)
    weights = sum(p.numel() * p.element_size() for p in m.parameters())
    store = cfcompile.offload(m, "cpu")
    # one registration per group, of exactly its buffer: no power-of-two rounding, nothing beyond the padding
    assert sorted(n for _, n in fake.registered) == sorted(g.nbytes for g in store.groups)
    for g in store.groups:
        assert (g.host.data_ptr(), g.nbytes) in fake.registered
        assert g.host.untyped_storage().nbytes() == g.nbytes and g.pinned
    assert store.pinned_bytes == store.host_bytes == sum(n for _, n in fake.registered)
    assert store.weight_bytes == weights
    assert 0 <= store.host_bytes - weights < 256 * len(list(m.parameters()))
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "dump": str(tmp_path)})
    with torch.no_grad():
        torch.testing.assert_close(fn(x), ref)
    summary = json.loads(next(tmp_path.glob("graph_*/plan.json")).read_text())["summary"]
    assert summary["pinned_bytes"] == summary["host_bytes"] == store.host_bytes   # the graph reads every group
    assert summary["weight_bytes"] == weights
    # the memory is unregistered once nothing views it any more (restore, and the compiled graph gone)
    cfcompile.restore(m)
    assert fake.unregistered == []                          # the graph and the store still hold the memory
    del fn, store, g
    torch._dynamo.reset()
    gc.collect()
    assert sorted(fake.unregistered) == sorted(p for p, _ in fake.registered)


@pytest.mark.parametrize("how", ["error code", "exception"])
def test_refused_pin_unpins_what_was_pinned_and_leaves_the_module_as_it_was(cudart, monkeypatch, how):
    m, x = toy()
    with torch.no_grad():
        ref = m(x)
    before = snapshot(m)
    fake = cudart(fail_at=2)
    if how == "exception":          # the pin function itself raises (e.g. no CUDA runtime)
        real_pin = off.pin

        def pin(host):
            if len(fake.registered) >= 2:
                raise RuntimeError("simulated: cudart unavailable")
            real_pin(host)
        monkeypatch.setattr(off, "pin", pin)
    cause = "CUDA error 2" if how == "error code" else "simulated: cudart unavailable"
    with pytest.raises(RuntimeError, match=rf"offload: pinning the host copy of group \S+ failed \(.*{cause}.*\) "
                                           rf"after 2 of 6 groups .* were pinned; those were unpinned again and "
                                           rf"nothing in the module was changed.*ulimit -l"):
        cfcompile.offload(m, "cpu")
    assert len(fake.registered) == 2
    assert sorted(fake.unregistered) == sorted(p for p, _ in fake.registered)   # at once, not at some later GC
    assert_untouched(m, before, x, ref)
    # and once pinning works, the same module offloads and compiles
    fake.fail_at = None
    monkeypatch.setattr(off, "pin", off.pin if how == "error code" else real_pin)
    cfcompile.offload(m, "cpu")
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(m, backend="chunkflow", options={"chunk_size": 4096})(x), ref)


def test_too_little_host_memory_is_refused_before_anything_is_allocated(monkeypatch):
    m, x = toy()
    with torch.no_grad():
        ref = m(x)
    before = snapshot(m)
    need = sum({id(g): g.nbytes for g, _ in planned_layout(m, "cpu").values()}.values())
    monkeypatch.setattr(off, "_available_host_bytes", lambda: need - 1)
    real_build = off._build_group

    def build(*a, **kw):
        raise AssertionError("allocated a host buffer before the memory check")
    monkeypatch.setattr(off, "_build_group", build)
    with pytest.raises(MemoryError, match=rf"offload: the weights need .* \({need} bytes\) of host memory \(6 packed "
                                          rf"groups\), but only .* \({need - 1} bytes\) is available \(MemAvailable\)"
                                          rf"\. Free host memory.*Nothing was changed"):
        cfcompile.offload(m, "cpu")
    assert_untouched(m, before, x, ref)
    monkeypatch.setattr(off, "_build_group", real_build)
    monkeypatch.setattr(off, "_available_host_bytes", lambda: need)        # exactly enough
    assert cfcompile.offload(m, "cpu").host_bytes == need
    cfcompile.restore(m)
    monkeypatch.setattr(off, "_available_host_bytes", lambda: None)        # unknown: no check
    cfcompile.offload(m, "cpu")
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, rtol=0, atol=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/meminfo")
def test_available_host_bytes_from_meminfo(monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)       # import psutil fails: /proc/meminfo is read
    fields = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    total = int(fields["MemTotal"].split()[0]) * 1024
    available = off._available_host_bytes()
    assert available is not None and 0 < available <= total
    assert abs(available - int(fields["MemAvailable"].split()[0]) * 1024) < total // 10
