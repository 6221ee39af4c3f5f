"""Which requests edf-triage puts back, and when, against what edf and edf-triage meet (64 x H100, Qwen-Image, load
0.8, one seed): serving17's diagnosis of the 2-3 requests triage lost.

    PYTHONPATH=<checkout> python benchmarks/results/serving_2026-12-07/serving17/triage_moves.py SEED"""
import sys
import cfcompile  # noqa: F401  (the checkout PYTHONPATH names)
from cfcompile.elastic.serving import SimConfig, generate_workload, simulate
from cfcompile.elastic.serving.planned import shipped_costs
from cfcompile.elastic.serving.policies import EDFBestFit

costs = shipped_costs("H100")
seed = int(sys.argv[1])
reqs = generate_workload("gfdit:qwen-image", gpus=64, minutes=10, load=0.8, seed=seed, costs=costs)


class Logged(EDFBestFit):
    def __init__(self):
        super().__init__(triage=True)
        self.name, self.moved = "edf-triage", {}

    def ordered(self, view):
        before = set(self._is_late)
        out = super().ordered(view)
        for tid in sorted(self._is_late - before):
            self.moved.setdefault(tid, view.now)
        return out


pol = Logged()
ra = simulate(reqs, 64, "edf", costs, SimConfig(mem_gb=80.0))
rb = simulate(reqs, 64, pol, costs, SimConfig(mem_gb=80.0))
met = lambda res: {r.id for r in res.requests if res.finish_s[r.id] <= r.deadline_s + 1e-9}
ma, mb = met(ra), met(rb)
rq = {r.id: r for r in reqs}
print(f"seed {seed}: edf met {len(ma)}, edf-triage met {len(mb)}; tasks moved to the late queue: {len(pol.moved)}")
for rid in sorted({t.split('/')[0] for t in pol.moved}):
    r = rq[rid]
    moves = [(t.split('/')[1], round(s, 2)) for t, s in pol.moved.items() if t.startswith(rid + "/")]
    print(f"  {rid} {r.klass} arrival {r.arrival_s:.2f} deadline {r.deadline_s:.2f} | edf done {ra.finish_s[rid]:.2f}"
          f" triage done {rb.finish_s[rid]:.2f} | moved {moves}")
for rid in sorted(ma ^ mb):
    r = rq[rid]
    print(f"  met only by {'edf' if rid in ma else 'edf-triage'}: {rid} {r.klass} deadline {r.deadline_s:.2f}, "
          f"edf done {ra.finish_s[rid]:.2f}, triage done {rb.finish_s[rid]:.2f}")
