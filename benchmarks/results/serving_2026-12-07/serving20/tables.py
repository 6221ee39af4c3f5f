"""serving20: the bound (oracle_mixed_24gb.jsonl) against edf and memory-aware (seeds_mixed_24gb.jsonl), both models,
64 x 24 GB, 60 min, H100 costs. Writes markdown to stdout.

    python benchmarks/results/serving_2026-12-07/serving20/tables.py > .../tables.md
"""
import json
from pathlib import Path

HERE = Path(__file__).parent
bound = {(r["load"], r["seed"]): r for r in map(json.loads, open(HERE / "oracle_mixed_24gb.jsonl"))}
sims = {(r["load"], r["seed"]): r for r in map(json.loads, open(HERE / "seeds_mixed_24gb.jsonl"))}
loads = sorted({k[0] for k in bound})
seeds = sorted({k[1] for k in bound})


def pts(x, n):
    return 100.0 * x / n


print("| load | requests | bound (feasible alone) | edf | memory-aware | memory-aware - edf (points) | "
      "bound - edf: most any policy can gain (points) | memory-aware below the bound (requests) |")
print("|---|---|---|---|---|---|---|---|")
for L in loads:
    n = [bound[L, s]["requests"] for s in seeds]
    b = [bound[L, s]["bound"] for s in seeds]
    e = [sims[L, s]["edf"][0] for s in seeds]
    m = [sims[L, s]["memory-aware"][0] for s in seeds]
    assert [sims[L, s]["requests"] for s in seeds] == n
    N, B, E, M = sum(n), sum(b), sum(e), sum(m)
    f = lambda xs: " / ".join(f"{x:,}" for x in xs)
    g = lambda xs: " / ".join(f"{x:+.1f}" for x in xs)
    print(f"| {L} | {f(n)} ({N:,}) | {f(b)} ({B:,}; {B / N:.3f}) | {f(e)} ({E:,}; {E / N:.3f}) | "
          f"{f(m)} ({M:,}; {M / N:.3f}) | {g(pts(mi - ei, ni) for mi, ei, ni in zip(m, e, n))} (sum {pts(M - E, N):+.1f}) | "
          f"{g(pts(bi - ei, ni) for bi, ei, ni in zip(b, e, n))} (sum {pts(B - E, N):+.1f}) | "
          f"{' / '.join(str(bi - mi) for bi, mi in zip(b, m))} ({B - M}) |")
print()
print("Feasible alone per (model, class), summed over seeds (feasible / requests):")
print()
print("| load | " + " | ".join(sorted(bound[loads[0], seeds[0]]["per_class_feasible_of"])) + " |")
print("|---|" + "---|" * len(bound[loads[0], seeds[0]]["per_class_feasible_of"]))
for L in loads:
    keys = sorted(bound[L, seeds[0]]["per_class_feasible_of"])
    cells = []
    for k in keys:
        a = sum(bound[L, s]["per_class_feasible_of"][k][0] for s in seeds)
        t = sum(bound[L, s]["per_class_feasible_of"][k][1] for s in seeds)
        cells.append(f"{a:,} / {t:,}")
    print(f"| {L} | " + " | ".join(cells) + " |")
print()
tight = [(L, s, bound[L, s]["bound_total"], bound[L, s]["tightest_interval_s"]) for L in loads for s in seeds
         if bound[L, s]["bound"] < bound[L, s]["feasible_alone"] or bound[L, s]["bound_total"] < bound[L, s]["feasible_alone"]]
print(f"Cells where a capacity bound cut below feasible-alone: {tight or 'none'}")

# experiments (not adopted): experiment_wait.jsonl (both models, 64 x 24 GB) and experiment_wait_qwen8.jsonl
exp = {(r["load"], r["seed"]): r for r in map(json.loads, open(HERE / "experiment_wait.jsonl"))}
print()
print("Experiments, not adopted (met per seed 0-3, sum; memory-aware = the policy as it is):")
print()
print("| both models, 64 x 24 GB | load | memory-aware | wait | last | wait+last | bound |")
print("|---|---|---|---|---|---|---|")
for L in sorted({k[0] for k in exp}):
    cells = [[sims[L, s]["memory-aware"][0] for s in seeds]] + [[exp[L, s][k] for s in seeds] for k in
                                                                ("wait", "last", "wait+last")]
    cells.append([bound[L, s]["bound"] for s in seeds])
    print(f"| | {L} | " + " | ".join(" / ".join(f"{x:,}" for x in c) + f" ({sum(c):,})" for c in cells) + " |")
q8 = [json.loads(l) for l in open(HERE / "experiment_wait_qwen8.jsonl")]
print()
print("| Qwen-Image, 8 GPUs | load | edf | memory-aware | wait | wait+last |")
print("|---|---|---|---|---|---|")
for pool in ("fits", "24 GB"):
    for L in (0.6, 0.8, 1.0, 1.2):
        rs = sorted((r for r in q8 if r["pool"] == pool and r["load"] == L), key=lambda r: r["seed"])
        cells = [[r[k] for r in rs] for k in ("edf (serving17)", "memory-aware (serving19)", "wait", "wait+last")]
        print(f"| {pool} | {L} | " + " | ".join(" / ".join(str(x) for x in c) + f" ({sum(c):,})" for c in cells) + " |")
