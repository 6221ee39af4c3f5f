"""Models as users have them (hardening issue): tied weights, mixed dtypes, weights kept on the device by choice,
state_dict and saving after offload."""

import io

import pytest

import torch
from torch import nn

import cfcompile
from cfcompile.compiler.backend import compiled_graphs
from toy import toy


def test_tied_and_mixed_dtype_weights_through_the_backend():
    m, x = toy()
    m.blocks[1].ff1.weight = m.blocks[0].ff1.weight                          # shared across blocks
    m.blocks[3].to(torch.float64)                                            # a block in another dtype

    def forward(x):
        h = m.embed(x)
        for i, b in enumerate(m.blocks):
            h = b(h.double()).float() if i == 3 else b(h)
        return m.head(h)

    with torch.no_grad():
        ref = forward(x)
    store = cfcompile.offload(m, "cpu")
    assert {g.dtype for g in store.groups} == {torch.float32, torch.float64}
    assert m.blocks[1].ff1.weight is m.blocks[0].ff1.weight
    fn = torch.compile(forward, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.3})
    with torch.no_grad():
        torch.testing.assert_close(fn(x), ref)
        torch.testing.assert_close(fn(x), ref)
    plan = compiled_graphs()[-1].plan
    assert {g.dtype for g in plan.groups} == {"float32", "float64"}
    # the shared weight is read from one host copy: one weight plan, in block 0's group
    shared = [w for w in plan.weights if w.group.startswith("blocks.0") and w.shape == (256, 64)]
    assert len(shared) == 1


def test_weight_kept_on_the_device_by_choice_is_an_ordinary_input():
    m, x = toy()
    with torch.no_grad():
        ref = m(x)
    cfcompile.offload(m, "cpu")
    m.head.weight = nn.Parameter(m.head.weight.detach().clone())   # the user keeps this one as a normal tensor
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096})
    with torch.no_grad():
        torch.testing.assert_close(fn(x), ref)
    plan = compiled_graphs()[-1].plan
    assert all(w.shape != tuple(m.head.weight.shape) or w.group != "head:float32" for w in plan.weights)
    assert any(w.group == "head:float32" for w in plan.weights)      # the bias is still streamed from the store


def test_state_dict_and_saving_after_offload():
    m, x = toy()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    cfcompile.offload(m, "cpu")
    after = m.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    buf = io.BytesIO()
    torch.save(after, buf)
    buf.seek(0)
    fresh, _ = toy()
    fresh.load_state_dict(torch.load(buf))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), m(x), rtol=0, atol=0)
    # loading into the offloaded model writes through to the host store
    m.load_state_dict({k: v * 0 for k, v in before.items()})
    assert all(float(p.detach().abs().sum()) == 0 for p in m.parameters())


@pytest.mark.parametrize("dynamic", [True, None])
def test_dynamic_sizes(dynamic):
    """``dynamic=True`` (sizes as symbols; Dynamo also turns LayerNorm's ``eps`` into a 0-d tensor input the graph
    calls ``.item()`` on: the cost pass failed the compile on it) and the default, where a second size recompiles
    with dynamic sizes: every length equals eager."""
    m, _ = toy()
    cfcompile.offload(m, "cpu")
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.5},
                       dynamic=dynamic)
    with torch.no_grad():
        for n in (32, 48, 17, 32):
            x = torch.randn(2, n, 16)
            torch.testing.assert_close(fn(x), m(x), rtol=1e-5, atol=1e-5)
