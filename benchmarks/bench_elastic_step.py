"""A DiT step at Ulysses degree 2 over a logical group (cfcompile.elastic) against diffusers' own context
parallelism, in one run, and the cost of moving the step between groups.

    torchrun --nproc-per-node 2 benchmarks/bench_elastic_step.py --model flux --height 1024 --width 1024
    torchrun --nproc-per-node 2 benchmarks/bench_elastic_step.py --model flux --tiny --device cpu   # gloo smoke test

Each rank builds the model twice from seed 0 (the same weights): A with ``enable_parallelism(ContextParallelConfig(
ulysses_degree=2))`` (a process-group mesh, NCCL communicators), B with `cfcompile.elastic.set_ulysses_group` over
the logical group (0, 1) (the world communicator only). Both compiled with Inductor. Measured (median after
warm-up, ranks aligned by a barrier): A's step, B's step on (0, 1), B's step alternating (0, 1) / (1, 0) (a group
change before every step: no recompile), and B's step with each rank alone (group of one, the full sequence).
Rank 0 writes $OUT/elastic_step_<model>_<tokens>.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent.parent))
from cfcompile.elastic import form_group, set_ulysses_group  # noqa: E402
from cfcompile.presets import Workload, get_preset  # noqa: E402
from cfcompile import _compat  # noqa: E402
from common import init_distributed, workload_parser  # noqa: E402


def main() -> int:
    p = workload_parser(__doc__)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args()
    cuda = args.device == "cuda"
    rank, world, device, dtype = init_distributed(cuda)
    if world != 2:
        raise SystemExit("run with torchrun --nproc-per-node 2")
    from diffusers import ContextParallelConfig

    preset = get_preset(args.model)
    workload = Workload(height=args.height, width=args.width, frames=args.frames, sp_degree=world)
    diffusers_cp = preset.build(device, dtype, tiny=args.tiny)
    inputs = preset.inputs(diffusers_cp.config, workload, device, dtype)
    diffusers_cp.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))
    _compat.prepare_context_parallel(diffusers_cp)   # else a graph break per block under compile (Wan)
    logical = preset.build(device, dtype, tiny=args.tiny)
    frames = torch._dynamo.utils.counters["stats"]

    def sync():
        if cuda:
            torch.cuda.synchronize()
        dist.barrier()

    def timed(fn, before=None) -> float:
        times = []
        for i in range(3 + args.iters):
            if before:
                before(i)
            sync()
            t = time.perf_counter()
            out = fn()
            sync()
            if i >= 3:
                times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times), out

    def first(o):
        import torch.distributed._functional_collectives as funcol

        o = o[0] if isinstance(o, (tuple, list)) else o
        return (o.wait() if isinstance(o, funcol.AsyncCollectiveTensor) else o).float()

    rows = {}
    with torch.no_grad():
        a = torch.compile(diffusers_cp, backend="inductor")
        rows["diffusers_cp_ms"], ref = timed(lambda: first(a(**inputs)))
        b = torch.compile(logical, backend="inductor")
        pair, swapped = form_group((0, 1)), form_group((1, 0))
        set_ulysses_group(logical, pair)
        rows["logical_group_ms"], out = timed(lambda: first(b(**inputs)))
        rows["max_rel_diff_vs_diffusers_cp"] = ((out - ref).abs().max() / ref.abs().max()).item()
        compiled_before = frames["unique_graphs"]
        rows["alternating_groups_ms"], _ = timed(
            lambda: first(b(**inputs)), before=lambda i: set_ulysses_group(logical, (pair, swapped)[i % 2]))
        rows["recompiles_when_alternating"] = frames["unique_graphs"] - compiled_before
        set_ulysses_group(logical, form_group((rank,)))
        rows["alone_ms"], alone = timed(lambda: first(b(**inputs)))
        rows["max_rel_diff_alone_vs_pair"] = ((alone - out).abs().max() / out.abs().max()).item()
    rows["graph_breaks"] = sum(torch._dynamo.utils.counters["graph_break"].values())
    if rank == 0:
        rows.update(model=args.model, tokens=preset.tokens(workload), date=time.strftime("%Y-%m-%d"),
                    torch=torch.__version__, device=torch.cuda.get_device_name() if cuda else "cpu",
                    nccl_p2p_disable=os.environ.get("NCCL_P2P_DISABLE", "0"))
        print(json.dumps(rows, indent=1), flush=True)
        out_dir = Path(os.environ.get("OUT", "."))
        (out_dir / f"elastic_step_{args.model}_{rows['tokens']}.json").write_text(json.dumps(rows, indent=1))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
