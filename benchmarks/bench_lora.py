"""A LoRA swap on an offloaded, compiled DiT (random weights), and what call-time binding costs per call.

    python benchmarks/bench_lora.py --model flux --height 512 --width 512 --rank 64 --resident-fraction 0.5
    python benchmarks/bench_lora.py --model flux --tiny --device cpu --rank 4

After each of: compile, load a random rank-r LoRA with diffusers' ``load_lora_adapter``, ``fuse_lora``,
``unfuse_lora``, ``unload_lora``: the compiled output against the eager output of the model as it is then (eager
reads the offloaded weights from host memory: the reference by construction), as max |diff| / max |eager|, and the
compiled step time, and ``lora_effect``: this eager output against the one before any LoRA, the same way (what a
compiled call that missed the LoRA would be off by: the negative control). Then the binding cost: the CPU time of every
graph call outside its kernels (lock and stream check, routing, binding, change check, extra inputs), summed over a
call of the model, against the step time.
Writes $OUT/lora_<model>_<tokens>.json after every row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_offload import environment_cpu, time_steps_cpu  # noqa: E402
from common import environment, time_steps, write  # noqa: E402

import cfcompile  # noqa: E402
from cfcompile.compiler.backend import chunkflow as chunkflow_backend, compiled_graphs  # noqa: E402
from cfcompile.presets import Workload, get_preset  # noqa: E402

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def random_lora(model, rank: int, seed: int, b_std: float) -> dict:
    """A diffusers-format LoRA state dict for ``model``'s attention projections, random A and B (B's entries of
    standard deviation ``b_std``: large enough that the LoRA changes the output far more than bf16 rounding does)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and any(name.endswith(t) for t in TARGETS):
            a = torch.randn(rank, m.in_features, generator=g) / m.in_features ** 0.5
            b = torch.randn(m.out_features, rank, generator=g) * b_std
            out[f"{name}.lora_A.weight"] = a.to(m.weight.dtype)
            out[f"{name}.lora_B.weight"] = b.to(m.weight.dtype)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="flux")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--resident-fraction", type=float, default=0.5)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--b-std", type=float, default=0.2, help="standard deviation of the random LoRA's B entries")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--control", action="store_true", help="first the same compile with plain Inductor, weights on "
                   "the device, against eager: how far compiled is from eager without chunkflow (the numerics floor)")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--regional", action="store_true", help="diffusers' compile_repeated_blocks instead of the whole "
                   "model (one graph per block class: faster to compile, and every block goes through binding)")
    args = p.parse_args()
    cuda = args.device == "cuda"
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if cuda else torch.float32)
    timer, env = (time_steps, environment()) if cuda else (time_steps_cpu, environment_cpu())
    preset = get_preset(args.model)
    workload = Workload(height=args.height, width=args.width)
    model = preset.build(device, dtype, tiny=args.tiny)
    inputs = preset.inputs(model.config, workload, device, dtype)
    tokens = preset.tokens(workload)
    mode = "regional" if args.regional else "whole"
    name = f"lora_{args.model}{'-tiny' if args.tiny else ''}_{tokens}_{mode}_{str(dtype)[6:]}.json"
    rows: list[dict] = []
    if args.control:   # plain Inductor, weights on the device: the compiled-vs-eager floor of these numerics
        with torch.no_grad():
            eager = model(**inputs)[0].float()
            if args.regional:
                model.compile_repeated_blocks(backend="inductor")
                out = model(**inputs)[0].float()
                for m in model.modules():
                    m._compiled_call_impl = None
            else:
                out = torch.compile(model, backend="inductor")(**inputs)[0].float()
        torch._dynamo.reset()
        row = dict(step=f"control: plain Inductor ({mode}, no offload) vs eager",
                   rel_err=((out - eager).abs().max() / eager.abs().max()).item(), model=args.model, tokens=tokens,
                   dtype=str(dtype), **env)
        rows.append(row)
        print(row, flush=True)
        write(rows, name)
        del eager, out
    cfcompile.offload(model, device=device)
    options = {"resident_fraction": args.resident_fraction, **({"chunk_size": "8KiB"} if args.tiny else {})}
    if args.regional:
        model.compile_repeated_blocks(backend=chunkflow_backend, options=options)
        fn = model
    else:
        fn = torch.compile(model, backend=chunkflow_backend, options=options)
    # Time spent outside the compiled kernels on every graph call: the per-device lock and stream check
    # (`runtime.ops.exclusive`), routing, binding (finding the weights' host groups, checking them for changes) and
    # building the extra inputs.
    import cfcompile.compiler.backend as backend_module
    from cfcompile.compiler.backend import _Compiled
    from cfcompile.runtime.binding import Binder
    spent = {"lock": 0.0, "route": 0.0, "bind": 0.0}   # seconds; route includes bind
    route, exclusive, bind = _Compiled.route, backend_module.exclusive, Binder.bind

    def timed(key, f):
        def g(*a):
            t0 = time.perf_counter()
            try:
                return f(*a)
            finally:
                spent[key] += time.perf_counter() - t0
        return g

    class TimedExclusive:
        def __init__(self, device):
            self.ctx = exclusive(device)

        def __enter__(self):
            t0 = time.perf_counter()
            self.ctx.__enter__()
            spent["lock"] += time.perf_counter() - t0

        def __exit__(self, *exc):
            t0 = time.perf_counter()
            self.ctx.__exit__(*exc)
            spent["lock"] += time.perf_counter() - t0

    _Compiled.route, Binder.bind = timed("route", route), timed("bind", bind)
    backend_module.exclusive = TimedExclusive

    def eager_call():
        """The model without its compiled blocks (regional compilation sets ``_compiled_call_impl``)."""
        saved = {m: m._compiled_call_impl for m in model.modules() if m._compiled_call_impl is not None}
        try:
            for m in saved:
                m._compiled_call_impl = None
            return model(**inputs)[0].float()
        finally:
            for m, impl in saved.items():
                m._compiled_call_impl = impl

    base: list = []   # the eager output before any LoRA

    def check(step: str) -> None:
        t0 = time.perf_counter()
        with torch.no_grad():
            eager = eager_call()
            if cuda:
                torch.cuda.synchronize()
            eager_s = time.perf_counter() - t0
            r = timer(lambda: fn(**inputs), warmup=2, iters=args.iters)
            out = fn(**inputs)[0].float()
        err = ((out - eager).abs().max() / eager.abs().max()).item()
        # the negative control: how far the output with the LoRA is from the output without it (what a compiled
        # call that missed the LoRA's load or fuse would be off by); rel_err must stay far below it
        if not base:
            base.append(eager)
        lora_effect = ((eager - base[0]).abs().max() / eager.abs().max()).item()
        row = dict(step=step, rel_err=err, lora_effect=lora_effect, eager_s=eager_s, graphs=len(compiled_graphs()), model=args.model,
                   tokens=tokens, rank=args.rank, resident_fraction=args.resident_fraction, **env, **r)
        rows.append(row)
        print({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        write(rows, name)

    def graph_calls_per_model_call() -> int:
        calls = [0]
        orig = _Compiled.route

        def counted(self, a):
            calls[0] += 1
            return orig(self, a)

        _Compiled.route = counted
        try:
            with torch.no_grad():
                fn(**inputs)
        finally:
            _Compiled.route = orig
        return calls[0]

    def binding_cost() -> None:
        """What binding costs per call of the model in steady state, summed over the graphs' calls in one model
        call (measured right after compiling: a time-out in the LoRA steps cannot lose it)."""
        with torch.no_grad():
            fn(**inputs)
            for k in spent:
                spent[k] = 0.0
            for _ in range(20):
                fn(**inputs)
        ms = {k: v / 20 * 1e3 for k, v in spent.items()}
        step_ms = rows[-1]["step_ms"]
        bind_ms = ms["lock"] + ms["route"]
        # what the timers add (they are in the measured spans: three wrapped spans per graph call), measured here in
        # a warm loop, so a lower bound of what they add in situ: reported, not subtracted from bind_ms
        graph_calls = graph_calls_per_model_call()
        spent["probe"] = 0.0
        probe, n = timed("probe", lambda: None), 10000
        t0 = time.perf_counter()
        for _ in range(n):
            probe()
        spent.pop("probe")
        timer_ms = (time.perf_counter() - t0) / n * 1e3 * 3 * graph_calls
        row = dict(step="binding cost", regional=args.regional, bind_ms_per_call=bind_ms, lock_ms=ms["lock"],
                   route_ms=ms["route"], binder_ms=ms["bind"], step_ms=step_ms, share=bind_ms / step_ms,
                   graph_calls=graph_calls, timer_ms_warm=timer_ms, share_less_timers=(bind_ms - timer_ms) / step_ms,
                   **env)
        rows.append(row)
        print(row, flush=True)
        write(rows, name)

    check("compiled" + (" (regional)" if args.regional else ""))
    binding_cost()
    model.load_lora_adapter(random_lora(model, args.rank, 1, args.b_std), adapter_name="a", prefix=None)
    check("load_lora_adapter")
    model.fuse_lora(lora_scale=1.0)
    check("fuse_lora")
    model.unfuse_lora()
    check("unfuse_lora")
    model.unload_lora()
    check("unload_lora")

    return 0


if __name__ == "__main__":
    sys.exit(main())
