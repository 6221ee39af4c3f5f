"""Upper bound on the requests any policy can bring in by their deadline: Qwen-Image (gfdit mix), 8 GPUs, H100 costs,
pools where not every GPU holds the model (48 GB: it fits none, each streams at 48 GB; 80+24 GB: it fits the four
80 GB GPUs, the four 24 GB ones stream).

Per request, its options are the groups the pool can form: d <= 4 of the 80 GB GPUs (resident), d <= 4 of the
small ones (streamed at their memory), or d = 8 of all (streamed at the smallest); an option is feasible if the
request alone, started at its arrival, finishes by its deadline there (model loads not charged: a looser bound).
For any interval [a, b], the met requests whose window [arrival, deadline] lies inside it do all their work in it,
so (a) their GPU-seconds (the cheapest feasible option each, d x time) fit the pool's G x (b - a), and (b) those that
can only run on the 80 GB GPUs fit 4 x (b - a) there. Taking the cheapest first maximises how many fit one such
budget, so  met <= feasible - contained + (cheapest contained that fit)  for every interval and both budgets; the
bound is the smallest over a 2.5 s grid of intervals (and never more than the feasible-alone count).

    PYTHONPATH=. python benchmarks/results/serving_2026-12-07/serving17/oracle_pools.py > oracle_pools.jsonl"""
import bisect, json, math
import cfcompile  # noqa: F401  (this checkout, via PYTHONPATH)
from cfcompile.elastic.serving import generate_workload
from cfcompile.elastic.serving.planned import shipped_costs

costs = shipped_costs("H100")
m = costs.model("qwen-image")
GPUS, STEP = 8, 2.5
POOLS = {"48 GB": (0, 48.0), "80+24 GB": (4, 24.0)}  # (GPUs that hold the model, memory of the others)


def options(r, big, small_gb):
    """(GPU-seconds, needs the big GPUs) per feasible option."""
    out = []
    for d in m.degrees:
        if d <= big:
            t = m.request_ms(r, d) / 1e3
            if r.arrival_s + t <= r.deadline_s:
                out.append((d * t, True))
        if d <= GPUS - big or d == GPUS:
            t = m.request_ms(r, d, True, small_gb) / 1e3
            if r.arrival_s + t <= r.deadline_s:
                out.append((d * t, False))
    return out


def fit(costs_, cap):
    """How many of ``costs_`` (ascending) fit ``cap``, cheapest first."""
    n = 0
    for c in costs_:
        if c > cap:
            break
        cap -= c
        n += 1
    return n


def bound(reqs, big, small_gb):
    feas = []
    for r in reqs:
        opts = options(r, big, small_gb)
        if opts:
            feas.append((r.arrival_s, r.deadline_s, min(c for c, _ in opts),
                         min(c for c, _ in opts) if all(b for _, b in opts) else None, r.klass))
    n = len(feas)
    best, where = n, None
    end = max(f[1] for f in feas)
    grid = [i * STEP for i in range(int(math.ceil(end / STEP)) + 1)]
    for a in grid:
        later = sorted((f for f in feas if f[0] >= a), key=lambda f: f[1])
        inside, only, k = [], [], 0
        for b in grid:
            if b <= a:
                continue
            while k < len(later) and later[k][1] <= b:  # windows now inside [a, b]
                bisect.insort(inside, later[k][2])
                if later[k][3] is not None:
                    bisect.insort(only, later[k][3])
                k += 1
            if not inside:
                continue
            u = n - len(inside) + fit(inside, GPUS * (b - a))
            if only and big:
                u = min(u, n - len(only) + fit(only, big * (b - a)))
            if u < best:
                best, where = u, (a, b)
    return n, best, where


for pool, (big, small_gb) in POOLS.items():
    for load in (0.6, 0.8):
        for seed in (0, 1, 2, 3):
            reqs = generate_workload("gfdit:qwen-image", gpus=GPUS, minutes=10, load=load, seed=seed, costs=costs)
            n, b, where = bound(reqs, big, small_gb)
            print(json.dumps({"pool": pool, "load": load, "seed": seed, "requests": len(reqs), "feasible_alone": n,
                              "bound": b, "bound_frac": round(b / len(reqs), 4), "tightest_interval_s": where}),
                  flush=True)
