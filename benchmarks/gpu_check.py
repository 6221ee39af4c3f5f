"""Correctness of offload + chunkflow on a real GPU with a small Flux (run before the benchmarks).

    python benchmarks/gpu_check.py            # writes the generated code of each variant to $OUT

Checks: eager on offloaded (UVA) weights is bitwise the eager result; every chunkflow schedule gives the same output
on repeated calls, matches plain Inductor, and its generated code waits before it reads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch._inductor.utils import run_and_get_code

sys.path.insert(0, str(Path(__file__).parent))
from common import build_flux, flux_inputs  # noqa: E402

import cfcompile  # noqa: E402
from cfcompile.backend import compiled_graphs  # noqa: E402
from cfcompile.passes.rewrite import clobbers  # noqa: E402
from cfcompile.passes.verify import check_generated_order  # noqa: E402

SMALL = dict(num_layers=2, num_single_layers=4, attention_head_dim=64, num_attention_heads=4,
             joint_attention_dim=256, pooled_projection_dim=128, axes_dims_rope=(16, 24, 24))
VARIANTS = ((0.0, 1, True), (0.0, 1, False), (0.0, 0, True), (0.0, 2, True), (0.5, 1, True), (1.0, 1, True))


def check(dtype: torch.dtype, tol: float, variants=VARIANTS) -> bool:
    model = build_flux("cuda", dtype=dtype, **SMALL)
    inputs = flux_inputs(256, 64, config=model.config, dtype=dtype)
    ok = True
    with torch.no_grad():
        ref = model(**inputs)[0]
        ind = torch.compile(model, backend="inductor")(**inputs)[0]
        torch._dynamo.reset()
        before = torch.cuda.memory_allocated()
        cfcompile.offload(model, device="cuda")
        after = torch.cuda.memory_allocated()
        eager = model(**inputs)[0]
        print(f"[{dtype}] device memory before offload {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB; "
              f"eager on UVA weights bitwise equal: {torch.equal(eager, ref)}; inductor vs eager "
              f"{(ind - ref).abs().max().item():.3g}")
        for rf, depth, overlap in variants:
            fn = torch.compile(model, backend="chunkflow", options={
                "resident_fraction": rf, "chunk_size": "1MiB", "prefetch_depth": depth, "overlap_copies": overlap})
            first, code = run_and_get_code(fn, **inputs)
            g = compiled_graphs()[-1]
            order = check_generated_order(code[0], list(g.chunkflow_layout.slots), clobbers(g.chunkflow_plan))
            runs = [first[0].clone()] + [fn(**inputs)[0].clone() for _ in range(3)]
            torch.cuda.synchronize()
            diffs = [f"{(r - ind).abs().max().item():.3g}" for r in runs]
            good = not order and all(torch.allclose(r, ind, atol=tol, rtol=tol) for r in runs)
            ok &= good
            tag = f"{str(dtype)[6:]}_rf{rf}_d{depth}_{'ov' if overlap else 'sync'}"
            print(f"[{tag}] {'OK ' if good else 'BAD'} max|out-inductor| per call {diffs}; "
                  f"equal to inductor: {torch.equal(runs[-1], ind)}; order violations: {order[:3]}", flush=True)
            if os.environ.get("OUT") and dtype == torch.float32:
                Path(os.environ["OUT"], f"code_{tag}.py").write_text(code[0])
            torch._dynamo.reset()
        cfcompile.restore(model)
        ok &= torch.equal(model(**inputs)[0], ref)
    return ok


def main() -> None:
    if "--quick" in sys.argv:
        ok = check(torch.float32, 1e-4, VARIANTS[::2])
    else:
        ok = check(torch.float32, 1e-4) & check(torch.bfloat16, 3e-2)
    print("ALL OK" if ok else "FAILURES")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
