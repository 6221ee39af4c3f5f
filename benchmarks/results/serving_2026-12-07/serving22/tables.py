"""serving22 (serving21/tables.py for wait="expected"): before / after tables from the jsonl files here and the
earlier sections' (before = memory-aware at serving19's code, which serving20 and serving21 did not change; after =
memory-aware with wait="expected").

    python benchmarks/results/serving_2026-12-07/serving22/tables.py > .../tables.md

Sections 2-5 from run_validate.sh with TAG=wait-expected and memory-aware's default ``wait`` set to "expected".
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
R17, R18, R19, R20 = (HERE.parent / s for s in ("serving17", "serving18", "serving19", "serving20"))


def rows(p):
    return [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()] if Path(p).exists() else []


def js(v):
    return " / ".join(f"{x:+d}" if isinstance(x, int) else str(x) for x in v)


# 1. 64 x H100, both models, load 1.2, 16 seeds
r = rows(HERE / "seeds_mixed_load1.2.jsonl")
if r:
    print("## 64 x H100, both models, 60 min, load 1.2, seeds 0-15: met - edf per seed\n")
    print("| policy | per seed | sum | seeds < edf |\n|---|---|---|---|")
    for p in ("memory-aware", "wait-all", "wait-expected"):
        if p in r[0]:
            d = [x[p][0] - x["edf"][0] for x in r]
            print(f"| {p} | {js(d)} | {sum(d):+d} | {sum(x < 0 for x in d)} |")
    print(f"| edf met | {' / '.join(str(x['edf'][0]) for x in r)} | {sum(x['edf'][0] for x in r)} | |\n")

for TAG in ("wait-expected",):
    # 2. 64 x H100, both models, loads 0.6-1.0, seeds 0-5
    a = rows(HERE / f"seeds_mixed_grid_{TAG}.jsonl")
    b = {(x["load"], x["seed"]): x for x in rows(R19 / "seeds_mixed_grid_after.jsonl")}
    if a:
        print(f"## [{TAG}] 64 x H100, both models, loads 0.6-1.0, seeds 0-5: memory-aware - edf (edf from serving19)\n")
        print("| load | before (serving19) | after | sum before -> after |\n|---|---|---|---|")
        for load in sorted({x["load"] for x in a}):
            xs = sorted((x for x in a if x["load"] == load), key=lambda x: x["seed"])
            bef = [b[(load, x["seed"])]["memory-aware"][0] - b[(load, x["seed"])]["edf"][0] for x in xs]
            aft = [x["memory-aware"][0] - b[(load, x["seed"])]["edf"][0] for x in xs]
            print(f"| {load} | {js(bef)} | {js(aft)} | {sum(bef):+d} -> {sum(aft):+d} |")
        print()

    # 3. both models on the memory pools, seeds 0-3
    a = rows(HERE / f"seeds_pools_mixed_{TAG}.jsonl")
    b = {(x["pool"], x["load"], x["seed"]): x for x in rows(R19 / "seeds_pools_mixed.jsonl") + rows(R19 / "seeds_pools_mixed_48gb.jsonl")}
    bound = {(x["load"], x["seed"]): x["bound"] for x in rows(R20 / "oracle_mixed_24gb.jsonl")}
    if a:
        print(f"## [{TAG}] 64 GPUs, both models, 60 min, seeds 0-3: met per seed (sum)\n")
        print("| pool | load | edf | memory-aware before | after | after - before | bound (24 GB) |\n|---|---|---|---|---|---|---|")
        for pool in ("80+24 GB", "48 GB", "24 GB"):
            for load in (0.6, 0.8, 1.0, 1.2):
                xs = sorted((x for x in a if x["pool"] == pool and x["load"] == load), key=lambda x: x["seed"])
                if not xs:
                    continue
                e = [b[(pool, load, x["seed"])]["edf"][0] for x in xs]
                bef = [b[(pool, load, x["seed"])]["memory-aware"][0] for x in xs]
                aft = [x["memory-aware"][0] for x in xs]
                bd = [bound.get((load, x["seed"])) for x in xs] if pool == "24 GB" else None
                f = lambda v: f"{' / '.join(map(str, v))} ({sum(v)})"
                print(f"| {pool} | {load} | {f(e)} | {f(bef)} | {f(aft)} | {js([y - x for x, y in zip(bef, aft)])} "
                      f"({sum(aft) - sum(bef):+d}) | {f(bd) if bd else ''} |")
        print()

    # 4. 64-GPU pools, seed 0 (Qwen-Image 10 min and both models 60 min)
    a = rows(HERE / f"pools64_{TAG}.jsonl")
    b = {(x["mix"], x["pool"], x["load"]): x for x in rows(R19 / "pools64_after.jsonl")}
    if a:
        print(f"## [{TAG}] 64 GPUs, seed 0: memory-aware SLO before (serving19) -> after; edf (serving18)\n")
        print("| mix | pool | load | edf | before | after | after - edf (points) |\n|---|---|---|---|---|---|---|")
        for x in a:
            bb = b.get((x["mix"], x["pool"], x["load"]), {})
            print(f"| {x['mix']} {x['minutes']:.0f} min | {x['pool']} | {x['load']} | {x['serving18 edf']} | "
                  f"{bb.get('memory-aware')} | {x['memory-aware']} | {x.get('memory-aware - edf pts')} |")
        print()

    # 5. serving17's 8-GPU sweep
    a = rows(HERE / f"sweep8_{TAG}.jsonl")
    if a:
        old = {(x["pool"], x["load"], x["seed"], x["policy"]): x for x in rows(R17 / "sweep8_after.jsonl")}
        s19 = {(x["pool"], x["load"], x["seed"]): x for x in rows(R19 / "sweep8_after.jsonl")}
        print(f"## [{TAG}] 8 GPUs, Qwen-Image, 10 min, seeds 0-3 (serving17's sweep): met per seed\n")
        print("| pool | load | edf | memory-aware before (serving19) | after | after - edf (points) |\n|---|---|---|---|---|---|")
        neg, changed = [], []
        for pool in ("fits", "80+24 GB", "48 GB", "24 GB"):
            for load in (0.6, 0.8, 1.0, 1.2):
                xs = sorted((x for x in a if x["pool"] == pool and x["load"] == load), key=lambda x: x["seed"])
                if not xs:
                    continue
                e = [old[(pool, load, x["seed"], "edf")]["met"] for x in xs]
                bef = [s19[(pool, load, x["seed"])]["met"] for x in xs]
                aft = [x["met"] for x in xs]
                d = [100 * (y - z) / x["requests"] for y, z, x in zip(aft, e, xs)]
                neg += [(pool, load, x["seed"], round(v, 1)) for v, x in zip(d, xs) if v < 0]
                changed += [(pool, load, x["seed"], y - z) for y, z, x in zip(aft, bef, xs) if y != z]
                f = lambda v: f"{' / '.join(map(str, v))} ({sum(v)})"
                print(f"| {pool} | {load} | {f(e)} | {f(bef)} | {f(aft)} | {' / '.join(f'{v:+.1f}' for v in d)} |")
        print(f"\nafter - edf < 0 on {len(neg)} of {len(a)} points: {neg}")
        print(f"after != before on {len(changed)} points (pool, load, seed, after - before): {changed}\n")
