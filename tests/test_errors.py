"""Errors a user can run into say what was wrong and what to change (hardening issue)."""

import pytest
import torch

import cfcompile
from cfcompile.runtime import arena
from toy import toy


def test_out_of_memory_for_the_arena_names_the_plan_and_the_options(monkeypatch):
    m, x = toy()
    cfcompile.offload(m, "cpu")
    real_empty = torch.empty

    def empty(*shape, device=None, **kw):
        if kw.get("dtype") is torch.float32 and shape and isinstance(shape[0], int) and shape[0] > 1000:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_empty(*shape, device=device, **kw)

    # Only arena.py sees the failing torch.empty: patching torch.empty itself would leak into torch's cached set of
    # factory functions (torch.utils._device._device_constructors), and later `with torch.device("meta")` blocks
    # would allocate real memory.
    class _Torch:
        def __getattr__(self, name):
            return empty if name == "empty" else getattr(torch, name)

    monkeypatch.setattr(arena, "torch", _Torch())
    fn = torch.compile(m, backend="chunkflow", options={"chunk_size": 4096, "resident_fraction": 0.5,
                                                        "shared_arena": False})
    with pytest.raises(Exception, match=r"allocating .* for this graph's weights failed \(arena .* resident .*\)\. "
                                        r"Lower resident_fraction, prefetch_depth or chunk_size"):
        with torch.no_grad():
            fn(x)
    monkeypatch.undo()
    with torch.no_grad():   # nothing was left half-changed: the model still runs, eagerly and compiled
        torch.testing.assert_close(torch.compile(m, backend="chunkflow", options={"chunk_size": 4096})(x), m(x))


def test_inputs_on_the_wrong_device_and_bad_option_types():
    m, x = toy()
    with pytest.raises(ValueError, match="device: cannot parse 'gpu0'"):
        cfcompile.offload(m, "gpu0")
    with pytest.raises(ValueError, match="resident_fraction: expected a number in"):
        cfcompile.compile(m, resident_fraction="most")
    with pytest.raises(ValueError, match="memory_budget: cannot parse"):
        cfcompile.compile(m, memory_budget="a lot")
    with pytest.raises(TypeError, match="offload: expected a torch.nn.Module"):
        cfcompile.offload(x, "cpu")
