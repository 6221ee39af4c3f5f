"""Per block call overhead of chunkflow (everything in `run` except the compiled code), regional Flux with the real
block count (19 double + 38 single) at tiny width, on the CPU."""
import sys, time, statistics, torch
import cfcompile
from cfcompile.presets import get_preset, Workload
from cfcompile.compiler import backend as B

preset = get_preset("flux")
model = preset.build("cpu", torch.float32, tiny=True, num_layers=19, num_single_layers=38)
inputs = preset.inputs(model.config, Workload(height=64, width=64, text_tokens=8), "cpu", torch.float32)
cfcompile.offload(model, device="cpu")
model.compile_repeated_blocks(backend="chunkflow", options={"chunk_size": "8KiB", "resident_fraction": 0.5})
with torch.no_grad():
    for _ in range(3):
        model(**inputs)
inner = [0]
wrapped = set()
def wrap_all():
    for ref in B._compiled:
        run = ref()
        if run is None: continue
        st = run.chunkflow_info._state if hasattr(run.chunkflow_info, "_state") else None
wrap_all()
# time run() total minus compiled() time, by wrapping each _Compiled's compiled callable
from cfcompile.compiler.backend import _Compiled
orig_route = _Compiled.route
def route(self, args):
    g, inp = orig_route(self, args)
    c = g.compiled
    if not getattr(c, "_timed", False):
        def timedc(*a, _c=c):
            t = time.perf_counter_ns()
            try:
                return _c(*a)
            finally:
                inner[0] += time.perf_counter_ns() - t
        timedc._timed = True
        g.compiled = timedc
    return g, inp
_Compiled.route = route
# time every run() call: wrap the module's _compiled_call_impl? simpler: total forward time minus eager-part estimate
# -> time the run closures by patching B.exclusive's ctx enter/exit
outer = [0]; ncalls = [0]
class T:
    def __init__(self, d): self.c = ex(d)
    def __enter__(self):
        self.t = time.perf_counter_ns(); ncalls[0] += 1; return self.c.__enter__()
    def __exit__(self, *e):
        r = self.c.__exit__(*e); outer[0] += time.perf_counter_ns() - self.t; return r
ex = B.exclusive
B.exclusive = T
with torch.no_grad():
    for _ in range(3): model(**inputs)
    res = []
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
        outer[0] = inner[0] = ncalls[0] = 0
        model(**inputs)
        res.append((outer[0] - inner[0]) / ncalls[0] / 1e3)
print(f"calls/step {ncalls[0]}  overhead per call median {statistics.median(res):.2f} us  min {min(res):.2f} us")
