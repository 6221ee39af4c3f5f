import sys, json
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
gpus, load, mix, minutes, stored = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
costs = shipped_costs("H100")
old = {r["summary"]["policy"]: r["summary"] for r in json.load(open(stored)) if r["load"] == load}
out = []
for seed in (0, 1, 2, 3):
    reqs = generate_workload(mix, gpus=gpus, minutes=minutes, load=load, seed=seed, costs=costs)
    row = {"seed": seed, "requests": len(reqs)}
    for p in ("edf", "edf-triage", "memory-aware", "memory-aware-notriage"):
        s = simulate(reqs, gpus, p, costs, SimConfig(mem_gb=80.0)).summary
        row[p] = round(s["slo_attainment"] * s["requests"])
        if seed == 0 and p in old:
            o = dict(old[p]); o.pop("cpu_s", None)
            row[p + "_same_as_stored"] = json.dumps(o, sort_keys=True) == json.dumps(s, sort_keys=True)
    print(json.dumps(row), flush=True); out.append(row)
