"""Re-predict the H200 validation rows of benchmarks/RESULTS.md with the current cost model (CPU only, meta device).

    python benchmarks/repredict_validation.py      # -> $OUT/repredicted.json and one line per row

Each row is planned again with its options and the profile probed in its run: rf rows give the same plan as
measured when the placement does not change; budget rows may get another plan than the one measured (the new costs
move the chosen residency), so their comparison is weaker.
"""
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
from cfcompile.config import ChunkFlowConfig
from cfcompile.costmodel import estimate_costs
from cfcompile.costmodel.profiles import DeviceProfile
from cfcompile.offload import planned_layout
from cfcompile.plan.analysis import find_weight_reads
from cfcompile.plan.search import plan_with_model
from cfcompile.planning import capture_graphs
from cfcompile.presets import Workload, get_preset
R = str(Path(__file__).parent / 'results') + '/'
files = [('flux', dict(height=512, width=512), ['validate_flux_1024_h200.json']),
         ('flux', dict(height=1024, width=1024), ['validate_flux_4096_h200.json', 'validate_flux_4096_budget_h200.json']),
         ('qwen-image', dict(height=1024, width=1024), ['validate_qwen-image_4096_h200.json']),
         ('wan', dict(height=480, width=832, frames=17), ['validate_wan_7800_h200.json', 'validate_wan_7800_budget_h200.json'])]
out = []
for name, wl, fs in files:
    p = get_preset(name); m = p.build("meta"); inp = p.inputs(m.config, Workload(**wl), "meta", torch.bfloat16)
    gm, ex = max(capture_graphs(m, inp), key=lambda g: len(list(g[0].graph.nodes)))
    layout = planned_layout(m)
    reads = find_weight_reads(gm, ex, locate=lambda t: layout.get(id(t)))
    cache = {}
    for f in fs:
        for r in json.load(open(R + f)):
            prof = DeviceProfile.from_json(r['profile'])
            key = json.dumps(r['profile'], sort_keys=True)
            if key not in cache:
                cache[key] = estimate_costs(gm, ex, prof, [x.input_index for x in reads])
            costs = cache[key]
            cfg = r['config']
            if cfg.startswith('inductor'):
                pred, peak = costs.total_ms, None
            elif 'budget=' in cfg:
                b = cfg.split('budget=')[1].strip()
                plan, pr = plan_with_model(reads, ChunkFlowConfig(memory_budget=b), costs, prof)
                pred, peak = pr.step_ms, pr.peak_bytes / 2**30
            else:
                rf = float(cfg.split('rf=')[1].split()[0]); cs = cfg.split('chunk=')[1].strip()
                plan, pr = plan_with_model(reads, ChunkFlowConfig(chunk_size=cs, resident_fraction=rf), costs, prof)
                pred, peak = pr.step_ms, pr.peak_bytes / 2**30
            row = dict(file=f, config=cfg, measured_ms=r['step_ms'], old_pred_ms=r.get('predicted_step_ms'), new_pred_ms=pred,
                       measured_gib=r['peak_alloc_gib'], new_peak_gib=peak)
            out.append(row); print(row, flush=True)
with open(Path(os.environ.get('OUT', '.')) / 'repredicted.json', 'w') as f:
    json.dump(out, f, indent=1)
