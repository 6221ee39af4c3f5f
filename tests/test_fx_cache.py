"""A chunkflow graph is saved to and loaded from Inductor's FX graph cache across processes.

The same script runs twice, each time in a fresh interpreter sharing one TORCHINDUCTOR_CACHE_DIR: the first run
must compile (a cache miss, no hit), the second must load the compiled graph from the cache (a hit) and still
compute what eager computes (the script asserts that; the prefetch / wait ops key their state by what the
compiled code is given, so a cache hit in a new process must work).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json

    import torch
    from torch import nn

    import cfcompile
    from cfcompile.compiler.backend import compiled_graphs


    class Block(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x):
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x))))


    class Toy(nn.Module):
        def __init__(self, dim=32, hidden=64, depth=2):
            super().__init__()
            self.proj_in = nn.Linear(dim, dim)
            self.blocks = nn.ModuleList(Block(dim, hidden) for _ in range(depth))
            self.proj_out = nn.Linear(dim, dim)

        def forward(self, x):
            x = self.proj_in(x)
            for block in self.blocks:
                x = block(x)
            return self.proj_out(x)


    torch.manual_seed(0)
    model = Toy().eval()
    x = torch.randn(2, 8, 32)
    with torch.no_grad():
        expected = model(x)

    cfcompile.offload(model, "cpu")
    fn = torch.compile(model, backend="chunkflow", options={"chunk_size": 4096})
    with torch.no_grad():
        out = fn(x)
    torch.testing.assert_close(out, expected)

    plan = compiled_graphs()[-1].plan
    assert len(plan.streamed) >= 2 and len(plan.chunks) > len(plan.groups), plan

    counters = torch._dynamo.utils.counters["inductor"]
    print(json.dumps({"hit": counters["fxgraph_cache_hit"], "miss": counters["fxgraph_cache_miss"]}))
    """
)


def _run(script: str, env: dict) -> dict:
    proc = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(600)
def test_fx_graph_cache_hit_in_fresh_process(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor_cache"), TORCHINDUCTOR_FX_GRAPH_CACHE="1")
    env.pop("CFCOMPILE_DUMP", None)  # dumping bypasses the FX graph cache

    first = _run(str(script), env)
    assert first["miss"] >= 1 and first["hit"] == 0, first

    second = _run(str(script), env)
    assert second["hit"] >= 1, second
