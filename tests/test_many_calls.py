"""Long runs and several graphs over one host store (CPU; the GPU half belongs to a benchmark)."""

import resource

import torch

import cfcompile
from cfcompile.compiler.backend import compiled_graphs
from cfcompile.runtime import ops
from toy import toy


def test_thousand_calls_no_growth_and_same_result():
    m, x = toy()
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.25})
    with torch.no_grad():
        first = fn(x)
        events, streams = len(ops._events), len(ops._copy_streams)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(999):
            last = fn(x)
    assert torch.equal(last, first)                   # step 1,000 equals step 1
    assert (len(ops._events), len(ops._copy_streams)) == (events, streams)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
    assert grown_kib < 64 * 1024, f"peak RSS grew by {grown_kib} KiB over 1,000 calls"
    torch._dynamo.reset()
    fresh = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.25})
    with torch.no_grad():
        assert torch.equal(fresh(x), last)            # and a fresh compile's first step


def test_new_shapes_reuse_the_same_host_copy():
    m, x = toy()
    with torch.no_grad():
        refs = [m(x), m(x[:, :16]), m(x[:1])]
    store = cfcompile.offload(m, "cpu")
    host_ptrs = {g.host.data_ptr() for g in store.groups}
    before = compiled_graphs()  # graphs of earlier tests may still be alive (reference cycles): not ours
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096})
    with torch.no_grad():
        outs = [fn(x), fn(x[:, :16]), fn(x[:1])]
    for out, ref in zip(outs, refs):
        torch.testing.assert_close(out, ref)
    graphs = [g for g in compiled_graphs() if not any(g is b for b in before)]
    assert len(graphs) >= 2                           # the new shapes recompiled
    for g in graphs:                                  # every graph streams from the store's own host buffers
        assert {h.data_ptr() for h in g.runtime.hosts} <= host_ptrs
    # no second host copy was made: the module's store and its buffers are the ones offload created
    assert cfcompile.store_of(m) is store and {g.host.data_ptr() for g in store.groups} == host_ptrs
    assert all(p.untyped_storage().data_ptr() in host_ptrs for p in m.parameters())
