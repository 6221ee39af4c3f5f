"""The hardening cases on a real GPU (toy models, no diffusers): pinned bytes, a refused pin, CUDA-graph modes,
int8 / float8 weights, two models sharing the arena and the copy stream, one model's graphs sharing its resident
chunks, two models under one MemoryBudget.

    python benchmarks/gpu_harden_check.py        # prints one line per check; exit status 1 if any failed
    python benchmarks/gpu_harden_check.py shared_residents shared_budget     # only these checks

First GPU run: H200, 2026-11-23 (results/gpu_harden_check_h200.log): 15 of 16 OK. The failure was this script's: it
compared all allocated device bytes (33 MiB: most likely cuBLAS's 32 MiB workspace on Hopper) with the toy's 0.8 MB
of weights; it now checks what offloading freed. Session 5 (results/gpu_harden_check_h100.log, _h200_2.log,
_shared_budget_release_fix_h200.log, _h200_3.log): 24 checks, 24 OK on the H200 at the end; the MemoryBudget peak
checks found that `release_` made Inductor keep fused-away outputs in memory (fixed; benchmarks/RESULTS.md). The
same cases are tested on the CPU in tests/test_host_memory.py, test_modes.py, test_quantized.py, test_two_models.py
and test_budget.py.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import cfcompile  # noqa: E402
from cfcompile.compiler.backend import compiled_graphs  # noqa: E402
from cfcompile.runtime import ops  # noqa: E402
from cfcompile.runtime.arena import ARENAS, RESIDENTS  # noqa: E402
from toy import toy  # noqa: E402

off = importlib.import_module("cfcompile.offload")
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, bool(ok), detail))
    print(f"{'OK  ' if ok else 'FAIL'} {name} {detail}", flush=True)


def close(a, b, tol=1e-3) -> bool:
    return torch.allclose(a.float(), b.float(), rtol=tol, atol=tol)


def pinned_bytes() -> None:
    m, x = toy()
    m, x = m.cuda(), x.cuda()
    with torch.no_grad():
        ref = m(x)
    weights = sum(p.numel() * p.element_size() for p in m.parameters())
    torch.cuda.synchronize()
    on_device = torch.cuda.memory_allocated()   # weights + x + ref + the cuBLAS workspace (32 MiB on Hopper)
    store = cfcompile.offload(m, "cuda")
    check("pinned = host bytes", store.pinned_bytes == store.host_bytes > 0,
          f"pinned {store.pinned_bytes} host {store.host_bytes} weights {weights}")
    check("padding < 256 B a weight", 0 <= store.host_bytes - weights < 256 * len(list(m.parameters())))
    freed = on_device - torch.cuda.memory_allocated()
    check("params are cuda views of host memory (their device memory freed)",
          all(p.is_cuda for p in m.parameters()) and freed >= weights, f"freed {freed} of weights {weights}")
    with torch.no_grad():
        check("eager on offloaded weights is exact", torch.equal(m(x), ref))
        out = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096})(x)
    check("chunkflow matches eager", close(out, ref))
    plan = compiled_graphs()[-1].plan
    check("plan reports pinned bytes", plan.pinned_bytes == plan.host_bytes == store.host_bytes,
          f"{plan.to_json()['summary']}")


def refused_pin() -> None:
    m, x = toy()
    m, x = m.cuda(), x.cuda()
    with torch.no_grad():
        ref = m(x)
    before = {n: p.data_ptr() for n, p in m.named_parameters()}
    real_pin, calls = off.pin, []

    def pin(host):
        if len(calls) >= 2:
            raise RuntimeError("cudaHostRegister of 1 B failed with CUDA error 2 (simulated)")
        calls.append(host.data_ptr())
        real_pin(host)
    off.pin = pin
    try:
        cfcompile.offload(m, "cuda")
        check("refused pin raises", False)
    except RuntimeError as e:
        check("refused pin raises", "unpinned again and nothing in the module was changed" in str(e), str(e)[:120])
    finally:
        off.pin = real_pin
    # the two buffers pinned before the failure were unregistered: registering them again must succeed
    check("module untouched", cfcompile.store_of(m) is None and
          {n: p.data_ptr() for n, p in m.named_parameters()} == before)
    with torch.no_grad():
        check("module still runs", torch.equal(m(x), ref))
    cfcompile.offload(m, "cuda")
    with torch.no_grad():
        check("offload after a refused pin", torch.equal(m(x), ref))


def modes() -> None:
    m, x = toy(blocks=2)
    m, x = m.cuda(), x.cuda()
    cfcompile.offload(m, "cuda")
    for mode in ("reduce-overhead", "max-autotune"):
        torch._dynamo.reset()
        try:
            with torch.no_grad():
                torch.compile(m, backend="chunkflow", mode=mode)(x)
            check(f"mode={mode} refused", False)
        except Exception as e:  # noqa: BLE001
            check(f"mode={mode} refused", "max-autotune-no-cudagraphs" in str(e))


def quantized() -> None:
    from test_quantized import QModel

    torch.manual_seed(0)
    m, x = QModel().eval().cuda(), torch.randn(2, 16, 64, device="cuda")
    with torch.no_grad():
        ref = m(x)
        torch._dynamo.reset()
        cfcompile.offload(m, "cuda")
        out = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.3})(x)
        again = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.3})(x)
    check("int8 / float8 weights stream", close(out, ref, 1e-3) and torch.equal(out, again),
          f"max diff {float((out - ref).abs().max()):.2e} of {float(ref.abs().max()):.1f}")


def offloaded_pair():
    """Two toy models of different widths on the GPU, their eager outputs, then both offloaded: a, b, x, ra, rb."""
    a, x = toy(d=64, blocks=4)
    b, _ = toy(d=96, blocks=3)
    a, b, x = a.cuda(), b.cuda(), x.cuda()
    with torch.no_grad():
        ra, rb = a(x), b(x)
    cfcompile.offload(a, "cuda")
    cfcompile.offload(b, "cuda")
    return a, b, x, ra, rb


def two_models() -> None:
    torch._dynamo.reset()
    gc.collect()
    a, b, x, ra, rb = offloaded_pair()
    fa = torch.compile(a, backend="chunkflow", options={"chunk_size": 4096})
    fb = torch.compile(b, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.25})
    ok = True
    with torch.no_grad():
        for _ in range(5):
            ok &= close(fa(x), ra) and close(fb(x), rb) and close(fb(x), rb) and close(fa(x), ra)
    torch.cuda.synchronize()
    plans = [g.plan for g in compiled_graphs()[-2:]]
    check("two models alternately match eager", ok)
    check("one copy stream per device", len(ops._copy_streams) == 1, f"{len(ops._copy_streams)}")
    check("shared arena = the larger", ARENAS.bytes() == max(p.total_arena_bytes for p in plans),
          f"{ARENAS.bytes()} vs {[p.total_arena_bytes for p in plans]}")


def shared_residents() -> None:
    """Two resolutions of one model with half its chunks resident: the second graph adds no resident device memory."""
    torch._dynamo.reset()
    gc.collect()
    m, _ = toy()
    m = m.cuda()
    small, big = torch.randn(2, 16, 16, device="cuda"), torch.randn(2, 128, 16, device="cuda")
    with torch.no_grad():
        refs = m(small), m(big)
    cfcompile.offload(m, "cuda")
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.5}, dynamic=False)
    with torch.no_grad():
        o1 = fn(small)
        a = compiled_graphs()[-1]
        torch.cuda.synchronize()
        mem1, arena1 = torch.cuda.memory_allocated(), ARENAS.bytes()
        o2 = fn(big)
        b = compiled_graphs()[-1]
        torch.cuda.synchronize()
        mem2, arena2 = torch.cuda.memory_allocated(), ARENAS.bytes()
        ok = close(o1, refs[0]) and close(o2, refs[1]) and close(fn(small), refs[0]) and close(fn(big), refs[1])
    resident = a.plan.total_resident_bytes
    # what the second graph added besides its output and the arena's growth: nothing for residents
    added = mem2 - mem1 - o2.numel() * o2.element_size() - (arena2 - arena1)
    check("two resolutions match eager", ok)
    check("resident chunks held once", RESIDENTS.bytes() == resident == b.plan.total_resident_bytes,
          f"pool {RESIDENTS.bytes()} B, plans {resident} / {b.plan.total_resident_bytes} B")
    check("second graph allocates no resident copy", added < resident / 10,
          f"allocated {added} B beyond its output and the arena growth (resident set {resident} B)")
    ptrs = [t.data_ptr() for t in a.runtime.residents] == [t.data_ptr() for t in
                                                                      b.runtime.residents]
    check("both graphs read the same device copy", ptrs)


def shared_budget() -> None:
    """Two models under one MemoryBudget, small enough that the second takes chunks back from the first: both match
    eager and the measured peak stays within the budget."""
    torch._dynamo.reset()
    gc.collect()
    profile = Path("/tmp/cf_slow_copies.json")   # no copy hides: each graph wants all the residency it can get
    profile.write_text(json.dumps(dict(name="slow-copies", matmul_tflops=100.0, memory_gbs=1000.0, h2d_gbs=0.001,
                                       h2d_latency_us=0.0, kernel_overhead_us=0.0)))
    a, b, x, ra, rb = offloaded_pair()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    for size in ("2MiB", "1.2MiB"):
        torch._dynamo.reset()
        gc.collect()
        budget = cfcompile.MemoryBudget(size)
        opts = {"chunk_size": 4096, "memory_budget": budget, "profile": str(profile)}
        fa, fb = (torch.compile(m, backend="chunkflow", options=opts) for m in (a, b))
        with torch.no_grad():
            # Warm up until the plans settle: the first round compiles both; where the second model took chunks
            # back from the first, the first is planned again and recompiled on its next call. Inductor's
            # autotuning buffers (the size of L2) come and go while compiling and are no part of any plan.
            ok, seen = True, None
            for _ in range(4):
                ok &= close(fa(x), ra) and close(fb(x), rb)
                settled, seen = budget.usage() == seen, budget.usage()
                if settled:
                    break
            torch.cuda.synchronize()
            held = torch.cuda.memory_allocated() - base      # what stays between calls, for the report
            peak = 0
            for _ in range(3):          # the peak of the calls alone: allclose's temporaries are no part of a plan
                for f, ref in ((fa, ra), (fb, rb)):
                    torch.cuda.reset_peak_memory_stats()
                    y = f(x)
                    torch.cuda.synchronize()
                    peak = max(peak, torch.cuda.max_memory_allocated() - base)
                    ok &= close(y, ref)
                    del y
        u = budget.usage()
        check(f"MemoryBudget {size}: two models match eager", ok)
        check(f"MemoryBudget {size}: measured peak within the budget", peak <= budget.bytes,
              f"measured {peak} B, planned {u['peak_bytes']} B (resident {u['resident_bytes']}, arena "
              f"{u['arena_bytes']}, activations {u['activation_bytes']}), budget {budget.bytes} B, held between "
              f"calls {held} B")
        del fa, fb


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    chosen = sys.argv[1:]
    for fn in (pinned_bytes, refused_pin, modes, quantized, two_models, shared_residents, shared_budget):
        if chosen and fn.__name__ not in chosen:
            continue
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            check(fn.__name__, False, f"raised {type(e).__name__}: {e}")
    failed = [r for r in results if not r[1]]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)
