"""torch.compile modes and CUDA graphs (hardening): what reaches the backend, and what it refuses.

A custom backend gets ``mode`` as a keyword, and only when it is not "default" (`torch._TorchCompileWrapper`);
torch.compile itself refuses ``mode`` together with ``options``, so chunkflow also takes ``options={"mode": ...}``.
"reduce-overhead" and "max-autotune" turn on CUDA graphs, which the streaming ops cannot be captured in.
"""

import pytest
import torch

import cfcompile
from cfcompile.compiler.backend import compiled_graphs
from toy import toy


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cudagraph_modes_are_refused_naming_the_alternative(mode):
    m, x = toy(blocks=2)
    with torch.no_grad():
        ref = m(x)
    cfcompile.offload(m, "cpu")
    with pytest.raises(ValueError, match=rf"mode: '{mode}' turns on CUDA graphs.*mode='max-autotune-no-cudagraphs'"):
        cfcompile.compile(m, mode=mode, chunk_size=4096)
    fn = torch.compile(m, backend="chunkflow", mode=mode)          # reaches the backend as mode=...
    with pytest.raises(Exception, match=r"turns on CUDA graphs.*max-autotune-no-cudagraphs"), torch.no_grad():
        fn(x)
    with pytest.raises(Exception, match="turns on CUDA graphs"), torch.no_grad():
        torch.compile(m, backend="chunkflow", options={"mode": mode})(x)
    with torch.no_grad():                                          # nothing half-changed: eager still exact
        torch.testing.assert_close(m(x), ref, rtol=0, atol=0)


def test_cudagraphs_through_inductor_patches_or_global_config_are_refused():
    m, x = toy(blocks=2)
    cfcompile.offload(m, "cpu")
    with pytest.raises(ValueError, match=r"inductor: triton.cudagraphs=True turns on CUDA graphs"):
        cfcompile.compile(m, inductor={"triton.cudagraphs": True})
    with torch._inductor.config.patch({"triton.cudagraphs": True}), torch.no_grad():
        with pytest.raises(Exception, match=r"triton.cudagraphs is on for a graph that streams offloaded weights"):
            torch.compile(m, backend="chunkflow", options={"chunk_size": 4096})(x)


def test_mode_without_cudagraphs_reaches_the_backend_with_or_without_options():
    m, x = toy(blocks=2)
    with torch.no_grad():
        ref = m(x)
    cfcompile.offload(m, "cpu")
    # torch.compile refuses mode and options together: that is why options may carry the mode
    with pytest.raises(RuntimeError, match="Either mode or options"):
        torch.compile(m, backend="chunkflow", mode="max-autotune-no-cudagraphs", options={"chunk_size": 4096})
    with torch.no_grad():
        torch.testing.assert_close(cfcompile.compile(m, mode="max-autotune-no-cudagraphs", chunk_size=4096)(x), ref)
    config = compiled_graphs()[-1].config
    assert config.mode == "max-autotune-no-cudagraphs" and config.chunk_size == 4096
    assert config.inductor_patches()["max_autotune"] is True and "triton.cudagraphs" not in config.inductor_patches()
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(m, backend="chunkflow", mode="max-autotune-no-cudagraphs")(x)
    assert compiled_graphs()[-1].config.mode == "max-autotune-no-cudagraphs"
    with pytest.raises(ValueError, match="mode: given twice"):
        cfcompile.ChunkFlowConfig.from_options({"mode": "default"}, "max-autotune-no-cudagraphs")
