"""Per class: SLO, GPU-seconds on the 80 GB GPUs (0-3) and the 24 GB ones (4-7), and how long the missed requests waited
before their first step; 8 x 80+24 GB, Qwen-Image, H100 costs.

    PYTHONPATH=<checkout> python gpu_use_80_24.py LOAD SEED POLICIES   (policies: names, or "spare" = spare_big on)"""
import sys, cfcompile  # noqa: F401
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import MemoryAware
costs = shipped_costs("H100"); gpus = 8
mem = (80.0,)*4 + (24.0,)*4
load, seed = float(sys.argv[1]), int(sys.argv[2])
pols = sys.argv[3].split(",")
reqs = generate_workload("gfdit:qwen-image", gpus=gpus, minutes=10, load=load, seed=seed, costs=costs)
rq = {r.id: r for r in reqs}
for p in pols:
    pol = MemoryAware(spare_big=True) if p == "spare" else p
    res = simulate(reqs, gpus, pol, costs, SimConfig(mem_gb=mem))
    use = {}
    first = {}
    for x in res.records:
        if x.task.request not in rq: continue
        k = rq[x.task.request].klass
        big = sum(1 for g in x.task.group if g < 4); small = len(x.task.group) - big
        u = use.setdefault(k, [0.0, 0.0]); d = x.end_s - x.start_s
        u[0] += big*d; u[1] += small*d
        if x.task.kind != "text_encode": first.setdefault(x.task.request, x.start_s)
    met = {r.id for r in reqs if res.finish_s[r.id] <= r.deadline_s + 1e-9}
    miss = {}
    for r in reqs:
        if r.id not in met:
            w = first.get(r.id, 0) - r.arrival_s
            miss.setdefault(r.klass, []).append(round(w, 1))
    s = res.summary
    print(p, round(s["slo_attainment"] * s["requests"]),
          {k: round(v["slo_attainment"], 3) for k, v in s["per_class"].items()}, "GPU-s big/small",
          {k: (round(a), round(b)) for k, (a, b) in sorted(use.items())}, "gpu_busy", s.get("gpu_busy"))
    print("   missed: wait before first non-encode task (s), median per class",
          {k: (len(v), sorted(v)[len(v)//2]) for k, v in sorted(miss.items())})
