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


def main() -> None:
    model = build_flux("cuda", **SMALL)
    inputs = flux_inputs(256, 64, config=model.config)
    with torch.no_grad():
        ref = model(**inputs)[0]
        ind = torch.compile(model, backend="inductor")(**inputs)[0]
        torch._dynamo.reset()
        before = torch.cuda.memory_allocated()
        cfcompile.offload(model, device="cuda")
        after = torch.cuda.memory_allocated()
        print(f"device memory before offload {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB")
        assert after < before
        eager = model(**inputs)[0]
        torch.testing.assert_close(eager, ref)
        print("eager on UVA weights: exact" if torch.equal(eager, ref) else "eager on UVA weights: close")
        for rf in (0.0, 0.5, 1.0):
            fn = torch.compile(model, backend="chunkflow", options={"resident_fraction": rf, "chunk_size": "1MiB"})
            outs = [fn(**inputs)[0] for _ in range(3)]
            for o in outs:
                torch.testing.assert_close(o, ref, atol=2e-2, rtol=2e-2)
            print(f"chunkflow rf={rf}: max |out - eager| {(outs[-1] - ref).abs().max().item():.3g}, "
                  f"bitwise equal to inductor: {torch.equal(outs[-1], ind)}")
            torch._dynamo.reset()
        cfcompile.restore(model)
        torch.testing.assert_close(model(**inputs)[0], ref)
        print("restore: ok")


if __name__ == "__main__":
    main()
