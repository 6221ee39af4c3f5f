"""The hardening cases on a real GPU (toy models, no diffusers): pinned bytes, a refused pin, CUDA-graph modes,
int8 / float8 weights, two models sharing the arena and the copy stream.

    python benchmarks/gpu_harden_check.py        # prints one line per check; exit status 1 if any failed

First GPU run: H200, 2026-11-23 (results/gpu_harden_check_h200.log): 15 of 16 OK. The failure was this script's: it
compared all allocated device bytes (33 MiB: most likely cuBLAS's 32 MiB workspace on Hopper) with the toy's 0.8 MB
of weights; it now checks what offloading freed. Not re-run since. The same cases are tested on the CPU in
tests/test_host_memory.py, test_modes.py, test_quantized.py and test_two_models.py.
"""

from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import cfcompile  # noqa: E402
from cfcompile.backend import compiled_graphs  # noqa: E402
from cfcompile.runtime import ops  # noqa: E402
from cfcompile.runtime.arena import ARENAS  # noqa: E402
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
    plan = compiled_graphs()[-1].chunkflow_plan
    check("plan reports pinned bytes", plan.pinned_bytes == plan.host_bytes == store.host_bytes,
          f"{plan.to_json()['summary']}")


def refused_pin() -> None:
    m, x = toy()
    m, x = m.cuda(), x.cuda()
    with torch.no_grad():
        ref = m(x)
    before = {n: p.data_ptr() for n, p in m.named_parameters()}
    real_pin, calls = off._pin, []

    def pin(host):
        if len(calls) >= 2:
            raise RuntimeError("cudaHostRegister of 1 B failed with CUDA error 2 (simulated)")
        calls.append(host.data_ptr())
        real_pin(host)
    off._pin = pin
    try:
        cfcompile.offload(m, "cuda")
        check("refused pin raises", False)
    except RuntimeError as e:
        check("refused pin raises", "unpinned again and nothing in the module was changed" in str(e), str(e)[:120])
    finally:
        off._pin = real_pin
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


def two_models() -> None:
    torch._dynamo.reset()
    gc.collect()
    a, x = toy(d=64, blocks=4)
    b, _ = toy(d=96, blocks=3)
    a, b, x = a.cuda(), b.cuda(), x.cuda()
    with torch.no_grad():
        ra, rb = a(x), b(x)
    cfcompile.offload(a, "cuda")
    cfcompile.offload(b, "cuda")
    fa = torch.compile(a, backend="chunkflow", options={"chunk_size": 4096})
    fb = torch.compile(b, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.25})
    ok = True
    with torch.no_grad():
        for _ in range(5):
            ok &= close(fa(x), ra) and close(fb(x), rb) and close(fb(x), rb) and close(fa(x), ra)
    torch.cuda.synchronize()
    plans = [g.chunkflow_plan for g in compiled_graphs()[-2:]]
    check("two models alternately match eager", ok)
    check("one copy stream per device", len(ops._copy_streams) == 1, f"{len(ops._copy_streams)}")
    check("shared arena = the larger", ARENAS.bytes() == max(p.total_arena_bytes for p in plans),
          f"{ARENAS.bytes()} vs {[p.total_arena_bytes for p in plans]}")


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    for fn in (pinned_bytes, refused_pin, modes, quantized, two_models):
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            check(fn.__name__, False, f"raised {type(e).__name__}: {e}")
    failed = [r for r in results if not r[1]]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)
