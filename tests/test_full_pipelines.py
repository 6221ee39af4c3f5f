"""`cfcompile.full_pipelines`: the released pipelines' sizes from their configs, built without initialising weights
(meta parameters, real buffers), and `materialize` filling them once: tied weights stay tied, outputs finite."""

import pytest
import torch
from torch import nn

pytest.importorskip("diffusers")
pytest.importorskip("transformers", minversion="5")

from cfcompile.full_pipelines import parameters_on_meta, full_pipeline, materialize  # noqa: E402


def _billions(module: nn.Module) -> float:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values()) / 1e9


def test_flux_has_the_released_sizes_and_real_buffers():
    pipe = full_pipeline("flux", materialized=False)
    sizes = {name: round(_billions(m), 3) for name, m in pipe.components.items() if isinstance(m, nn.Module)}
    # FLUX.1-dev: the 11.9B DiT, T5-XXL's encoder 4.76B, CLIP-L's text model 0.123B, the 84M VAE
    assert sizes == {"transformer": 11.901, "text_encoder_2": 4.762, "text_encoder": 0.123, "vae": 0.084}
    for m in pipe.components.values():
        if isinstance(m, nn.Module):
            assert all(p.device.type == "meta" for p in m.parameters())
            assert all(b.device.type != "meta" for b in m.buffers())   # position ids, rotary tables: computed


def test_unknown_pipeline_and_bad_dtype_are_clear_errors():
    with pytest.raises(ValueError, match="unknown pipeline 'sdxl'; known: flux, wan"):
        full_pipeline("sdxl")
    with pytest.raises(ValueError, match="floating dtype"):
        full_pipeline("flux", dtype=torch.int8)


def test_materialize_fills_once_keeps_ties_and_finite_outputs():
    from transformers import T5Config, T5EncoderModel

    with parameters_on_meta():
        t5 = T5EncoderModel(T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=6, num_heads=4,
                                     feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False))
    assert all(p.device.type == "meta" for p in t5.parameters())
    materialize(t5, torch.bfloat16)
    params = list(t5.parameters())
    assert all(p.device.type == "cpu" and p.dtype == torch.bfloat16 and not p.requires_grad for p in params)
    assert t5.shared.weight is t5.encoder.embed_tokens.weight            # tied weights: one tensor
    norm = t5.encoder.final_layer_norm.weight
    assert torch.equal(norm, torch.ones_like(norm))                      # norm scales 1
    w = t5.encoder.block[0].layer[1].DenseReluDense.wi_0.weight.float()
    assert abs(w.std().item() - 32 ** -0.5) < 0.03                       # N(0, 1/fan_in)
    out = t5(input_ids=torch.arange(16)[None]).last_hidden_state
    assert torch.isfinite(out).all()
