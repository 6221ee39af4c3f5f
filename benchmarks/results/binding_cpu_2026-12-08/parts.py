"""Per-part cost of a block call's steady-state path outside the compiled code (regional Flux, real block counts at
tiny width, CPU): each part timed in a loop over the calls of one model call, in call order (timeit-style: warm
caches, so lower than in situ; for comparing versions of the code). Run from the repo root:
    OMP_NUM_THREADS=1 python benchmarks/results/binding_cpu_2026-12-08/parts.py"""
import statistics, time, torch
import cfcompile
from cfcompile.presets import get_preset, Workload
from cfcompile.compiler import backend as B
from cfcompile.compiler.backend import _Compiled
from cfcompile.runtime import ops

preset = get_preset("flux")
model = preset.build("cpu", torch.float32, tiny=True, num_layers=19, num_single_layers=38)
inputs = preset.inputs(model.config, Workload(height=64, width=64, text_tokens=8), "cpu", torch.float32)
cfcompile.offload(model, device="cpu")
model.compile_repeated_blocks(backend="chunkflow", options={"chunk_size": "8KiB", "resident_fraction": 0.5})
calls = []
orig = _Compiled.route
def rec(self, args):
    calls.append((self, args))
    return orig(self, args)
with torch.no_grad():
    for _ in range(3):
        model(**inputs)
    _Compiled.route = rec
    model(**inputs)
    _Compiled.route = orig
print("graph calls per model call:", len(calls))
dev = calls[0][0].device
def bench(name, f, reps=200):
    ts = []
    for _ in range(reps):
        t = time.perf_counter_ns()
        for g, a in calls:
            f(g, a)
        ts.append((time.perf_counter_ns() - t) / len(calls) / 1e3)
    print(f"{name:12s} {statistics.median(ts):6.2f} us/call")
def lock(g, a):
    with ops.exclusive(dev):
        pass
bench("exclusive", lock)
bench("binder", lambda g, a: g.binder.bind(a))
bench("route", lambda g, a: g.route(a))
bench("count", lambda g, a: g.count())
def whole(g, a):
    with ops.exclusive(dev):
        g.route(a)
bench("lock+route", whole)
