import importlib
import json
import logging
from importlib.metadata import entry_points
import re
from pathlib import Path

import pytest
import torch
from torch._inductor.utils import run_and_get_code
from torch.testing import FileCheck

import cfcompile
from cfcompile.compiler.backend import chunkflow as chunkflow_backend, compiled_graphs
from cfcompile.compiler.rewrite import clobbers
from cfcompile.compiler.verify import check_generated_order
from toy import toy


def compile_toy(options=None, **kw):
    m, x = toy(**kw)
    with torch.no_grad():
        eager = m(x)
        inductor = torch.compile(m, backend="inductor")(x)
    torch._dynamo.reset()
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, **(options or {})})
    with torch.no_grad():
        out, code = run_and_get_code(fn, x)
    return m, x, fn, out, code[0], eager, inductor


def test_registered_as_entry_point():
    assert "chunkflow" in torch._dynamo.list_backends()
    # what an install of this tree declares (an editable install made before the move to compiler/ still names
    # cfcompile.backend until it is reinstalled; `import cfcompile` registers the backend itself then)
    toml = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    value = re.search(r'\[project.entry-points.torch_dynamo_backends\]\nchunkflow = "([^"]+)"', toml).group(1)
    assert value == "cfcompile.compiler.backend:chunkflow"
    module, name = value.split(":")
    assert getattr(importlib.import_module(module), name) is chunkflow_backend
    eps = [e for e in entry_points(group="torch_dynamo_backends") if e.name == "chunkflow"]
    assert eps   # installed


@pytest.mark.parametrize("options", [
    {}, {"resident_fraction": 0.5}, {"resident_fraction": 1.0}, {"prefetch_depth": 0}, {"prefetch_depth": 3},
    {"chunk_size": "1MiB"}, {"chunk_size": 256, "resident_fraction": 0.3}])
def test_matches_eager_and_inductor(options):
    m, x, fn, out, code, eager, inductor = compile_toy(options)
    torch.testing.assert_close(out, eager)
    # The same kernels as plain Inductor, but the pass changes fusion boundaries a little (weights read after a
    # wait, readers realized before a release, no reorder_for_locality), so fp32 sums may round differently.
    torch.testing.assert_close(out, inductor)
    g = compiled_graphs()[-1]
    assert check_generated_order(code, list(g.layout.slots), clobbers(g.plan)) == []
    with torch.no_grad():
        assert torch.equal(fn(x), out)  # steady state: same result on every call


def test_generated_code_keeps_prefetch_wait_read_order():
    *_, code, _, _ = compile_toy()
    g = compiled_graphs()[-1]
    slot = lambda j: f"arg{g.layout.slots[j]}_1"  # noqa: E731
    # block 1 (slot 2) is prefetched before block 0 (slot 1) is waited for and read: the copy hides behind it
    (FileCheck().check(f"cfcompile.prefetch_.default({slot(1)},").check(f"cfcompile.prefetch_.default({slot(2)},")
     .check(f"cfcompile.wait_.default({slot(1)},").check(f"reinterpret_tensor({slot(1)}")
     .check(f"cfcompile.wait_.default({slot(2)},").check(f"reinterpret_tensor({slot(2)}").run(code))
    # block 2 reuses block 0's bytes: its prefetch comes after the release of block 0
    assert 1 in clobbers(g.plan)[3]
    # release_ takes the slot alone: readers as inputs made Inductor write the outputs it fuses away (RESULTS.md)
    FileCheck().check(f"cfcompile.release_.default({slot(1)})").check(
        f"cfcompile.prefetch_.default({slot(3)},").run(code)


def test_schedule_and_plan_in_dump(tmp_path):
    compile_toy({"dump": str(tmp_path), "resident_fraction": 0.25})
    d = Path(compiled_graphs()[-1].dump_dir)
    plan = json.loads((d / "plan.json").read_text())
    assert plan["summary"]["chunks"] == len(plan["chunks"]) > 6
    assert 0 < plan["summary"]["resident_chunks"] < plan["summary"]["chunks"]
    assert {"arena_bytes", "resident_bytes", "host_bytes", "streamed_bytes_per_call"} <= set(plan["summary"])
    table = (d / "schedule.txt").read_text()
    for column in ("node", "block", "chunks issued", "chunks waited", "arena bytes in use", "hidden?", "stall ms"):
        assert column in table
    prediction = json.loads((d / "prediction.json").read_text())
    assert prediction["profile"] == "cpu" and prediction["step_ms"] >= prediction["compute_ms"] > 0
    assert len(prediction["groups"]) == len([g for g in plan["groups"] if g["stream_range"][1]])
    graph = (d / "scheduled_graph.py").read_text()
    assert graph.count("cfcompile.wait_") == len([g for g in plan["groups"] if g["stream_range"][1]])
    # every group: prefetch before wait before first read, in the table
    rows = [line.split() for line in table.splitlines()[2:]]
    for grp in {r[2] for r in rows if r[1] == "wait"}:
        ops = [r[1] for r in rows if r[2] == grp]
        first_prefetch = next(i for i, op in enumerate(ops) if op.startswith("prefetch"))
        assert first_prefetch < ops.index("wait") < ops.index("first-read")
    assert (d / "timeline.json").exists()


def test_wrap_around_prefetches_the_next_call_in_the_tail():
    from cfcompile.runtime import ops

    m, x, fn, out, code, eager, _ = compile_toy()
    torch.testing.assert_close(out, eager)
    g = compiled_graphs()[-1]
    plan, layout = g.plan, g.layout
    wrapped = [j for j, grp in enumerate(plan.streamed) if grp.wrap_before is not None]
    assert wrapped[0] == 0  # the first streamed group, and those the cost model prefetches deeper
    for j in wrapped:
        slot = f"arg{layout.slots[j]}_1"
        # at the start: copy only on the first call (phase 2); in the tail, after its release: the next call's
        FileCheck().check(f"cfcompile.prefetch_.default({slot},").check(", 2)").check(
            f"cfcompile.release_.default({slot})").check(f"cfcompile.prefetch_.default({slot},").check(", 1)").run(
            code)
    assert check_generated_order(code, list(layout.slots), clobbers(plan)) == []
    slots = {g.runtime.slots[j].data_ptr() for j in wrapped}
    assert slots <= {k[0] for k in ops._pending}  # the first call's tail copied them for the next call
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(fn(x), eager)
            assert slots <= {k[0] for k in ops._pending}
    off = [line for line in compile_toy({"wrap_around": False})[4].splitlines() if "cfcompile.prefetch_" in line]
    assert off and all(line.rstrip().endswith(", 0)") for line in off)


def test_resident_fraction_moves_bytes_from_arena_to_resident():
    sizes = {}
    for f in (0.0, 0.5, 1.0):
        compile_toy({"resident_fraction": f})
        p = compiled_graphs()[-1].plan
        sizes[f] = (p.total_arena_bytes, p.total_resident_bytes, p.streamed_bytes)
        torch._dynamo.reset()
    assert sizes[0.0][1] == 0 and sizes[1.0][0] == 0 and sizes[1.0][2] == 0
    assert sizes[0.0][0] > sizes[0.5][0] > 0 and 0 < sizes[0.5][1] < sizes[1.0][1]


def test_refuses_graphs_that_need_gradients():
    m, x = toy()
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow")
    with pytest.raises(Exception, match="inference backend: call the compiled model under torch.no_grad"):
        fn(x)


def test_graph_without_offloaded_weights_is_plain_inductor(caplog):
    m, x = toy()
    before = len(compiled_graphs())
    with caplog.at_level(logging.INFO, logger="cfcompile"), torch.no_grad():
        out = torch.compile(m, backend="chunkflow")(x)
        torch.testing.assert_close(out, m(x))
    assert len(compiled_graphs()) == before
    assert any("reads no offloaded weight" in r.getMessage() for r in caplog.records)


def test_arena_is_freed_with_the_graph():
    m = compile_toy()[0]
    store = cfcompile.store_of(m)
    assert [g for g in compiled_graphs() if g.reads_from(store)]
    torch._dynamo.reset()
    import gc

    gc.collect()
    # only this test's graphs: a graph-break test earlier in the process leaves its graphs alive through Dynamo's
    # resume functions, which Dynamo puts in the test module's globals (`__resume_at_*`) and reset() keeps
    assert [g for g in compiled_graphs() if g.reads_from(store)] == []


def test_bad_options_fail_at_compile_with_the_key():
    m, x = toy()
    cfcompile.offload(m, "cpu")
    with pytest.raises(Exception, match="unknown chunkflow option"):
        with torch.no_grad():
            torch.compile(m, backend="chunkflow", options={"chunk": 1})(x)
    with pytest.raises(ValueError, match="resident_fraction"):
        cfcompile.compile(m, resident_fraction=2)


def test_logs_a_summary(caplog):
    with caplog.at_level(logging.INFO, logger="cfcompile"):
        compile_toy()
    # the backend's line (the pass's own "rewrote ..." line is skipped on an FX-graph-cache hit)
    assert any("compiled a graph with" in r.getMessage() and "arena" in r.getMessage() for r in caplog.records)
    assert any(r.name.startswith("cfcompile") for r in caplog.records)


def test_cfcompile_compile_helper():
    m, x = toy()
    with torch.no_grad():
        ref = m(x)
        cfcompile.offload(m, "cpu")
        torch.testing.assert_close(cfcompile.compile(m, chunk_size="4KiB", resident_fraction=0.5)(x), ref)
    assert compiled_graphs()[-1].plan.resident_fraction == 0.5


def test_chunkflow_name_works_without_the_entry_point(monkeypatch):
    """From a source tree (no installed entry point) ``import cfcompile`` registers the name itself."""
    import importlib.metadata

    from torch._dynamo.backends import registry

    # Dynamo imports its built-in backends and reads the entry points once per process (functools.cache): do it
    # now, into the real registry, not into the copies patched below (else they vanish with the patch: 'eager'
    # becomes an invalid backend for every later test in this process)
    registry._lazy_import()
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: importlib.metadata.EntryPoints(()))
    monkeypatch.setattr(registry, "_COMPILER_FNS", {k: v for k, v in registry._COMPILER_FNS.items() if k != "chunkflow"})
    monkeypatch.setattr(registry, "_BACKENDS", {k: v for k, v in registry._BACKENDS.items() if k != "chunkflow"})
    cfcompile._register_backend_without_entry_point()
    assert "chunkflow" in registry._COMPILER_FNS
    m, x = toy()
    with torch.no_grad():
        eager = m(x)
    cfcompile.offload(m, "cpu")
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(m, backend="chunkflow", options={"chunk_size": 4096})(x), eager)


def test_source_tree_without_any_installed_cfcompile(tmp_path):
    """A fresh interpreter that sees the packages of this environment but no installed cfcompile (no dist-info, so no
    entry point), importing cfcompile from the source tree: ``backend="chunkflow"`` resolves."""
    import os
    import site
    import subprocess
    import sys

    # the package alone: a source tree installed in development mode may hold cfcompile.egg-info (with the entry
    # point) beside it
    root = tmp_path / "src"
    root.mkdir()
    (root / "cfcompile").symlink_to(Path(cfcompile.__file__).resolve().parent)
    packages = tmp_path / "site"
    packages.mkdir()
    for d in site.getsitepackages():
        for entry in Path(d).iterdir():
            if not entry.name.lower().startswith(("cfcompile", "__editable__")) and entry.suffix != ".pth":
                (packages / entry.name).symlink_to(entry)
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "from importlib.metadata import entry_points\n"
            "assert not [e for e in entry_points(group='torch_dynamo_backends') if e.name == 'chunkflow']\n"
            "import torch, cfcompile\n"
            "assert cfcompile.__file__.startswith(sys.argv[2]), cfcompile.__file__\n"
            "from torch._dynamo import lookup_backend\n"
            "assert lookup_backend('chunkflow') is not None and 'chunkflow' in torch._dynamo.list_backends()\n")
    proc = subprocess.run([sys.executable, "-S", "-c", code, str(packages), str(root)], capture_output=True,
                          text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                          cwd=tmp_path)   # not the source tree: ``-c`` puts the working directory on sys.path
    assert proc.returncode == 0, proc.stderr[-3000:]
