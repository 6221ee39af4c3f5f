"""`cfcompile.apply` on a GPU: the tiny pipelines of `cfcompile.tiny_pipelines`, applied with ``device="cuda"``
(pinned host memory, UVA views, streamed chunks, one MemoryBudget), against the plain pipeline on the GPU.

    python benchmarks/gpu_pipelines_check.py [--pipelines flux,qwen-image,wan,wan2.2] [--budget 1GiB]

Per pipeline: the largest difference to the plain images (same seed), the components and what each got, the
budget's planned peak, and after `restore`: the weights are ordinary CPU tensors again (where they were) and the
images are the plain ones. Exits non-zero if any check fails. Correctness only; the timings printed include
compiling.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from tabulate import tabulate

import cfcompile
from cfcompile.offload import store_of
from cfcompile.tiny_pipelines import PIPELINES, TINY_CALLS, tiny_pipeline


def images(pipe, name: str) -> torch.Tensor:
    out = pipe(prompt="a photo of a cat", generator=torch.Generator().manual_seed(0), output_type="pt",
               **TINY_CALLS[name])
    return (out.frames if hasattr(out, "frames") else out.images).float().cpu()


def check(name: str, budget: str) -> tuple[list, bool]:
    plain = images(tiny_pipeline(name).to("cuda"), name)
    pipe = tiny_pipeline(name)                      # on the CPU, as from_pretrained leaves it
    cfcompile.apply(pipe, device="cuda", memory_budget=budget)
    t0 = time.perf_counter()
    first = images(pipe, name)
    t1 = time.perf_counter()
    second = images(pipe, name)
    t2 = time.perf_counter()
    record = pipe._cfcompile_applied
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    offloaded = all(store_of(m) is not None for m in modules)
    usage = record.budget.usage()
    cfcompile.restore(pipe)
    back = all(store_of(m) is None and all(type(p) is torch.nn.Parameter and p.device.type == "cpu"
                                           for p in m.parameters()) for m in modules)
    restored = (images(pipe.to("cuda"), name) - plain).abs().max().item()
    diff = max((first - plain).abs().max().item(), (second - plain).abs().max().item())
    ok = diff < 1e-3 and offloaded and back and restored < 1e-3
    row = [name, f"{diff:.1e}", offloaded, ", ".join(f"{k}: {v}" for k, v in record.summary().items()),
           f"{usage['peak_bytes'] / 2**20:.1f} MiB / {usage['graphs']}", f"{t1 - t0:.1f} / {t2 - t1:.2f}",
           back, f"{restored:.1e}", "ok" if ok else "FAILED"]
    return row, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pipelines", default=",".join(PIPELINES))
    ap.add_argument("--budget", default="1GiB")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_pipelines_check: needs a CUDA GPU (the CPU path is tests/test_pipelines.py)")
    rows, all_ok = [], True
    for name in args.pipelines.split(","):
        torch._dynamo.reset()
        row, ok = check(name, args.budget)
        rows.append(row)
        all_ok &= ok
        print(tabulate([row], tablefmt="plain"), flush=True)
    print(tabulate(rows, headers=["pipeline", "max diff", "offloaded", "components", "planned peak / graphs",
                                  "s first / second call", "restored to CPU", "diff after restore", ""]))
    print(torch.cuda.get_device_name(), f"torch {torch.__version__}")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
