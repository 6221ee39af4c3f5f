"""Correctness of offload + chunkflow on a real GPU with a small Flux (run before the benchmarks).

    python benchmarks/gpu_check.py            # writes the generated code of each variant to $OUT
    python benchmarks/gpu_check.py --device cpu --quick --long 20   # the script itself, on the CPU

Checks: eager on offloaded (UVA) weights is bitwise the eager result; every chunkflow schedule gives the same output
on repeated calls, matches plain Inductor, and its generated code waits before it reads. The variants cover the
fixed schedules, wrap-around, ``prefetch_depth="auto"``, ``memory_budget`` and ``calibrate`` (re-planned from a
timed call). Then two resolutions share one arena (the second graph grows it and the first is re-pointed), and a
long run (``--long N`` calls, default 1000) shows no growth of device memory or pending copy state and the last
output equal to the first.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import torch
from torch._inductor.utils import run_and_get_code

sys.path.insert(0, str(Path(__file__).parent))
from common import build_flux, flux_inputs  # noqa: E402

import cfcompile  # noqa: E402
from cfcompile.compiler.backend import compiled_graphs  # noqa: E402
from cfcompile.compiler.rewrite import clobbers  # noqa: E402
from cfcompile.compiler.verify import check_generated_order  # noqa: E402

SMALL = dict(num_layers=2, num_single_layers=4, attention_head_dim=64, num_attention_heads=4,
             joint_attention_dim=256, pooled_projection_dim=128, axes_dims_rope=(16, 24, 24))
_BASE = {"chunk_size": "1MiB"}
DEVICE = "cuda"   # --device cpu: the same checks on the CPU (memory_budget "auto" becomes 64 MiB there), to try the
#                   script itself before spending GPU time on it


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def allocated() -> int:
    return torch.cuda.memory_allocated() if DEVICE == "cuda" else 0
VARIANTS = (
    {"resident_fraction": 0.0, "prefetch_depth": 1},
    {"resident_fraction": 0.0, "prefetch_depth": 1, "overlap_copies": False},
    {"resident_fraction": 0.0, "prefetch_depth": 0},
    {"resident_fraction": 0.0, "prefetch_depth": 2},
    {"resident_fraction": 0.5, "prefetch_depth": 1},
    {"resident_fraction": 1.0, "prefetch_depth": 1},
    {"resident_fraction": 0.0, "prefetch_depth": 1, "wrap_around": False},
    {"resident_fraction": 0.25, "prefetch_depth": "auto"},
    {"memory_budget": "auto"},
    {"memory_budget": "weights/2"},  # replaced by half the weights' bytes plus 256 MiB for activations
    {"resident_fraction": 0.0, "calibrate": True},
)


def _tag(dtype: torch.dtype, options: dict) -> str:
    short = {"resident_fraction": "rf", "prefetch_depth": "d", "overlap_copies": "ov", "wrap_around": "wrap",
             "memory_budget": "budget", "calibrate": "cal"}
    return str(dtype)[6:] + "".join(f"_{short[k]}{v}" for k, v in options.items())


def check(dtype: torch.dtype, tol: float, variants=VARIANTS) -> bool:
    model = build_flux(DEVICE, dtype=dtype, **SMALL)
    inputs = flux_inputs(256, 64, device=DEVICE, config=model.config, dtype=dtype)
    ok = True
    with torch.no_grad():
        ref = model(**inputs)[0]
        ind = torch.compile(model, backend="inductor")(**inputs)[0]
        torch._dynamo.reset()
        before = allocated()
        cfcompile.offload(model, device=DEVICE)
        after = allocated()
        eager = model(**inputs)[0]
        print(f"[{dtype}] device memory before offload {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB; "
              f"eager on UVA weights bitwise equal: {torch.equal(eager, ref)}; inductor vs eager "
              f"{(ind - ref).abs().max().item():.3g}")
        for options in variants:
            if options.get("memory_budget") == "weights/2":
                weights = sum(p.numel() * p.element_size() for p in model.parameters())
                options = {"memory_budget": weights // 2 + 2**28}
            if options.get("memory_budget") == "auto" and DEVICE != "cuda":   # free memory is a GPU's notion
                options = {"memory_budget": "64MiB"}
            fn = torch.compile(model, backend="chunkflow", options={**_BASE, **options} if "memory_budget" not in
                               options else options)
            first, code = run_and_get_code(fn, **inputs)
            g = compiled_graphs()[-1]
            order = check_generated_order(code[0], list(g.layout.slots), clobbers(g.plan))
            runs = [first[0].clone()] + [fn(**inputs)[0].clone() for _ in range(3)]
            sync()
            diffs = [f"{(r - ind).abs().max().item():.3g}" for r in runs]
            good = not order and all(torch.allclose(r, ind, atol=tol, rtol=tol) for r in runs)
            ok &= good
            tag = _tag(dtype, options)
            print(f"[{tag}] {'OK ' if good else 'BAD'} max|out-inductor| per call {diffs}; "
                  f"equal to inductor: {torch.equal(runs[-1], ind)}; order violations: {order[:3]}", flush=True)
            if os.environ.get("OUT") and dtype == torch.float32:
                Path(os.environ["OUT"], f"code_{tag}.py").write_text(code[0])
            # the next variant may plan under another memory budget: no graph of this one may stay alive
            # (``g`` holds its runtime), else the budgets would be mixed on the same weights (an error)
            del fn, g
            torch._dynamo.reset()
            gc.collect()
        cfcompile.restore(model)
        ok &= torch.equal(model(**inputs)[0], ref)
    return ok


def check_two_resolutions_and_long_run(calls: int) -> bool:
    """Two image sizes through one compiled model (two graphs, one shared arena that the larger one grows), then
    ``calls`` calls of one graph: device memory and wrap-around state flat, last output equal to the first."""
    from cfcompile.runtime import ops
    from cfcompile.runtime.arena import ARENAS

    model = build_flux(DEVICE, dtype=torch.float32, **SMALL)
    small, large = (flux_inputs(n, 64, device=DEVICE, config=model.config, dtype=torch.float32) for n in (256, 1024))
    ok = True
    with torch.no_grad():
        refs = [torch.compile(model, backend="inductor", dynamic=False)(**x)[0] for x in (small, large)]
        torch._dynamo.reset()
        cfcompile.offload(model, device=DEVICE)
        fn = torch.compile(model, backend="chunkflow", dynamic=False,
                           options={"resident_fraction": 0.25, "chunk_size": "1MiB"})
        arenas = [ARENAS.bytes()]
        for x in (small, large, small, large):
            fn(**x)
            arenas.append(ARENAS.bytes())
        graphs = [g for g in compiled_graphs()]
        outs = [fn(**x)[0] for x in (small, large)]
        good = all(torch.allclose(o, r, atol=1e-4, rtol=1e-4) for o, r in zip(outs, refs))
        plans = sorted(g.plan.total_arena_bytes for g in graphs[-2:])
        shared = arenas[-1] == plans[-1] and len(graphs) >= 2
        print(f"[two resolutions] {'OK ' if good and shared else 'BAD'} graphs {len(graphs)}, arena bytes before and after each "
              f"call {arenas}, the graphs' own arenas {plans} (shared = the largest: {shared}); max|out-inductor| "
              f"{[f'{(o - r).abs().max().item():.3g}' for o, r in zip(outs, refs)]}", flush=True)
        ok &= good and shared

        first = fn(**small)[0].clone()
        sync()
        mem0, pending0, events0 = allocated(), len(ops._pending), len(ops._events)
        for i in range(calls):
            out = fn(**small)[0]
            if i == 9:
                sync()
                mem10, pending10, events10 = allocated(), len(ops._pending), len(ops._events)
        sync()
        mem, pending, events = allocated(), len(ops._pending), len(ops._events)
        flat = mem == mem10 and pending == pending10 and events == events10
        good = torch.equal(out, first)
        print(f"[long run] {'OK ' if good and flat else 'BAD'} {calls} calls: allocated {mem0}/{mem10}/{mem} bytes "
              f"(before/after 10/after {calls}), pending copies {pending0}/{pending10}/{pending}, events "
              f"{events0}/{events10}/{events}; call {calls} equal to the first: {good}", flush=True)
        ok &= good and flat
        torch._dynamo.reset()
        cfcompile.restore(model)
    return ok


def main() -> None:
    global DEVICE
    if "--device" in sys.argv:
        DEVICE = sys.argv[sys.argv.index("--device") + 1]
    calls = int(sys.argv[sys.argv.index("--long") + 1]) if "--long" in sys.argv else 1000
    if calls < 10:
        raise SystemExit("--long: at least 10 calls (memory is compared after the 10th and the last)")
    if "--quick" in sys.argv:
        ok = check(torch.float32, 1e-4, VARIANTS[0:7:2] + VARIANTS[7:])
    else:
        ok = check(torch.float32, 1e-4) & check(torch.bfloat16, 3e-2)
    ok &= check_two_resolutions_and_long_run(calls)
    print("ALL OK" if ok else "FAILURES")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
