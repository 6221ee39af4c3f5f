"""Correctness of offload + chunkflow on a real GPU with a small Flux (run before the benchmarks).

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import build_flux, flux_inputs  # noqa: E402

import cfcompile  # noqa: E402

SMALL = dict(num_layers=2, num_single_layers=4, attention_head_dim=64, num_attention_heads=4,
             joint_attention_dim=256, pooled_projection_dim=128, axes_dims_rope=(16, 24, 24))


def check(dtype: torch.dtype, tol: float) -> None:
    model = build_flux("cuda", dtype=dtype, **SMALL)
    inputs = flux_inputs(256, 64, config=model.config, dtype=dtype)
    with torch.no_grad():
        ref = model(**inputs)[0]
        ind = torch.compile(model, backend="inductor")(**inputs)[0]
        torch._dynamo.reset()
        before = torch.cuda.memory_allocated()
        cfcompile.offload(model, device="cuda")
        after = torch.cuda.memory_allocated()
        print(f"[{dtype}] device memory before offload {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB")
        assert after < before
        eager = model(**inputs)[0]
        assert torch.equal(eager, ref), "eager on UVA weights differs"
        print(f"[{dtype}] eager on UVA weights: bitwise equal; inductor vs eager {(ind - ref).abs().max().item():.3g}")
        outs = {}
        for rf, depth in ((0.0, 1), (0.0, 0), (0.0, 2), (0.5, 1), (1.0, 1)):
            fn = torch.compile(model, backend="chunkflow",
                               options={"resident_fraction": rf, "chunk_size": "1MiB", "prefetch_depth": depth})
            runs = [fn(**inputs)[0].clone() for _ in range(3)]
            assert all(torch.equal(r, runs[0]) for r in runs), "repeated calls differ"
            out = outs[(rf, depth)] = runs[0]
            print(f"[{dtype}] chunkflow rf={rf} depth={depth}: max|out-eager| {(out - ref).abs().max().item():.3g}, "
                  f"max|out-inductor| {(out - ind).abs().max().item():.3g}, equal to inductor: {torch.equal(out, ind)}")
            torch.testing.assert_close(out, ind, atol=tol, rtol=tol)
            torch._dynamo.reset()
        same = all(torch.equal(o, outs[(0.0, 1)]) for o in outs.values())
        print(f"[{dtype}] all schedules bitwise equal to each other: {same}")
        cfcompile.restore(model)
        assert torch.equal(model(**inputs)[0], ref)
        print(f"[{dtype}] restore: ok")


def main() -> None:
    check(torch.float32, 1e-4)
    check(torch.bfloat16, 2e-2)


if __name__ == "__main__":
    main()
