import pytest
import torch
from torch import nn

import cfcompile
from cfcompile.offload import lookup, store_of
from toy import toy


def test_params_become_views_of_block_groups():
    m, x = toy()
    with torch.no_grad():
        ref = m(x)
    store = cfcompile.offload(m, "cpu")
    names = sorted(g.key for g in store.groups)
    assert names == sorted(["embed:float32", "head:float32"] + [f"blocks.{i}:float32" for i in range(4)])
    for name, p in m.named_parameters():
        group, offset = lookup(p)
        assert offset % 256 == 0
        assert group.key.split(":")[0] == ("blocks." + name.split(".")[1] if name.startswith("blocks") else
                                            name.split(".")[0])
        assert p.is_contiguous() and p.untyped_storage().data_ptr() == group.host.data_ptr()
    assert store.host_bytes == sum(g.nbytes for g in store.groups)
    assert store.pinned_bytes == 0  # nothing is pinned on the CPU
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, rtol=0, atol=0)  # eager still works, exactly


def test_offload_twice_is_harmless_and_restore_undoes_it():
    m, x = toy()
    with torch.no_grad():
        ref = m(x)
    s1 = cfcompile.offload(m, "cpu")
    assert cfcompile.offload(m, "cpu") is s1
    cfcompile.restore(m)
    assert store_of(m) is None
    assert all(lookup(p) is None for p in m.parameters())
    with torch.no_grad():
        assert torch.equal(m(x), ref)
    with pytest.raises(ValueError, match="was not offloaded"):
        cfcompile.restore(m)


def test_tied_and_mixed_dtype_weights():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = nn.Linear(8, 8)
            self.b.weight = self.a.weight            # shared
            self.c = nn.Linear(8, 8).to(torch.float64)

    m = Tied()
    store = cfcompile.offload(m, "cpu")
    assert m.a.weight is m.b.weight and lookup(m.b.weight) is not None
    assert {g.key for g in store.groups} == {"a:float32", "b:float32", "c:float64"}
    assert sum(len(g.slots) for g in store.groups) == 5  # the tied weight is packed once


def test_errors_leave_the_module_untouched():
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4, device="meta"))
    before = [p for p in m.parameters()]
    with pytest.raises(ValueError, match="meta device"):
        cfcompile.offload(m, "cpu")
    assert store_of(m) is None and [p for p in m.parameters()] == before
    assert all(lookup(p) is None for p in m.parameters())
    with pytest.raises(ValueError, match="device: only 'cuda' and 'cpu'"):
        cfcompile.offload(nn.Linear(2, 2), "xpu")
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        cfcompile.offload(torch.zeros(2), "cpu")
    with pytest.raises(ValueError, match="no parameters"):
        cfcompile.offload(nn.ReLU(), "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is missing")
def test_cuda_without_cuda():
    m = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="CUDA is not available here; use device='cpu'"):
        cfcompile.offload(m, "cuda")
    assert lookup(m.weight) is None


def test_offloaded_for_another_device():
    m = nn.Linear(2, 2)
    cfcompile.offload(m, "cpu")
    store = store_of(m)
    store.device = torch.device("cuda", 0)  # pretend: the second offload must refuse, not silently re-pack
    with pytest.raises(ValueError, match="already offloaded for cuda:0"):
        cfcompile.offload(m, "cpu")
