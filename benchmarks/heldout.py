"""Held-out DiTs for validating the cost model outside the presets (issue 17): three diffusers transformers the cost
model was never developed or tuned on, two of them video models. Benchmarks only: they are not in
`cfcompile.presets.PRESETS` (``cfcompile plan --model`` does not know them; `cfcompile.plan_model` plans them as a
meta module with ``inputs=``). Each is a `cfcompile.presets.Preset` (its input layout lives in presets._LAYOUTS),
so ``bench_offload.py --model <name>`` runs it exactly as it runs a preset.

=================  ==============================  =======  ==================================================
name               diffusers class                 params   real config (transformer/config.json of)
=================  ==============================  =======  ==================================================
hunyuan-video      HunyuanVideoTransformer3DModel  12.82B   hunyuanvideo-community/HunyuanVideo (class defaults)
cogvideox-5b       CogVideoXTransformer3DModel      5.57B   THUDM/CogVideoX-5b (48 heads, 42 layers, 3D rope)
sana-1600m         SanaTransformer2DModel           1.60B   Efficient-Large-Model/Sana_1600M_1024px_diffusers
                                                            (class defaults)
=================  ==============================  =======  ==================================================

(tests/test_heldout.py checks these parameter counts on the meta device.) Inputs are the ones the installed
diffusers 0.42 pipelines pass (presets.py, ``_hunyuan_video_inputs`` and the two after it): HunyuanVideo 256 Llama
tokens with their mask, pooled CLIP, guidance 6.0 x 1000; CogVideoX-5B 226 T5 tokens, an int64 timestep and the
pipeline's 3D rotary embedding; Sana 300 Gemma-2 tokens with their mask, the 32x DC-AE latent.

GPU commands for the next session (H200, 141 GB; $OUT collects the JSON, one file per model and size, rewritten
after every row, so a command cut off at the 10-minute limit keeps the rows it finished). Sizes: HunyuanVideo's
pipeline default (720x1280, 129 frames: 118,800 tokens) would take an estimated ~20 s a step without offloading, so
the ~10 calls of each config would not fit a 10-minute command; 544x960 (its 540p size) at 61 frames (32,640
tokens) does, with 24 GiB of bf16 weights and the activations of the no-offload row well inside 141 GB. Its
configs are split over two commands (a first call compiles 60 blocks), the second writing to a folder of its own
(both write hunyuan-video_32640.json). CogVideoX-5B and Sana run at their pipelines' defaults, batch 2 (both batch
the classifier-free-guidance pair); HunyuanVideo is guidance-distilled (batch 1).

    python benchmarks/bench_offload.py --model hunyuan-video --height 544 --width 960 --frames 61 --iters 5 \\
        --configs inductor,chunkflow:0,chunkflow:0.5
    mkdir -p $OUT/budgets && OUT=$OUT/budgets python benchmarks/bench_offload.py --model hunyuan-video \\
        --height 544 --width 960 --frames 61 --iters 5 --configs budget:8GiB,budget:16GiB
    python benchmarks/bench_offload.py --model cogvideox-5b --height 480 --width 720 --frames 49 --batch 2 \\
        --configs inductor,chunkflow:0,chunkflow:0.5,budget:6GiB,budget:8GiB
    python benchmarks/bench_offload.py --model sana-1600m --height 1024 --width 1024 --batch 2 \\
        --configs inductor,chunkflow:0,chunkflow:0.5,budget:1GiB,budget:2GiB

What the cost model predicts for these on the H200 profile (``cfcompile.plan_model`` on the meta device, bf16,
chunk_size auto = 16 MiB as in bench_offload; computed on a CPU before any GPU run, to set against the measured rows):

=================  =============================  ========================  ========================
model              workload                       resident_fraction 0       resident_fraction 0.5
=================  =============================  ========================  ========================
hunyuan-video      544x960, 61 frames, batch 1    2205 ms, peak 7.04 GiB    2179 ms, peak 17.73 GiB
cogvideox-5b       480x720, 49 frames, batch 2    1135 ms, peak 4.89 GiB    1130 ms, peak 9.76 GiB
sana-1600m         1024x1024, batch 2             63.8 ms, peak 0.54 GiB    31.0 ms, peak 1.97 GiB
=================  =============================  ========================  ========================

The budgets sit above these resident-fraction-0 peaks (a budget below the predicted minimum is refused at compile
time with a BudgetError row).

Each row has ``step_ms`` / ``peak_alloc_gib`` (measured) next to ``predicted_step_ms`` / ``predicted_peak_gib``;
the issue's target is within 10%. CPU smoke test (seconds): ``--tiny --device cpu --configs inductor,chunkflow:0.5
--iters 2``.
"""

from __future__ import annotations

from cfcompile.presets import Preset

HELDOUT: dict[str, Preset] = {p.name: p for p in (
    Preset(
        name="hunyuan-video", cls_name="HunyuanVideoTransformer3DModel",
        config=dict(),  # the class defaults are HunyuanVideo (hunyuanvideo-community/HunyuanVideo)
        # rope axes sum to the head dim (16); the refiner attends over the text with its mask.
        tiny_config=dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=1,
                         num_single_layers=2, num_refiner_layers=1, patch_size=2, patch_size_t=1,
                         text_embed_dim=32, pooled_projection_dim=32, rope_axes_dim=(4, 6, 6)),
        default_text_tokens=256,  # max_sequence_length of HunyuanVideoPipeline (after the template crop), padded
        description="HunyuanVideo transformer, 13B: 20 dual- + 40 single-stream blocks over video tokens (held out)"),
    Preset(
        name="cogvideox-5b", cls_name="CogVideoXTransformer3DModel",
        # THUDM/CogVideoX-5b transformer/config.json (the class defaults are CogVideoX-2B: 30 heads, 30 layers,
        # sincos positions)
        config=dict(num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16,
                    time_embed_dim=512, text_embed_dim=4096, num_layers=42, sample_width=90, sample_height=60,
                    sample_frames=49, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226,
                    use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False),
        # the 3D rope splits head_dim 16 into 4 (t) + 6 (h) + 6 (w); sample 16 px latent -> 8x8 base grid.
        tiny_config=dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
                         time_embed_dim=32, text_embed_dim=32, num_layers=2, sample_width=16, sample_height=16,
                         sample_frames=5, patch_size=2, max_text_seq_length=16,
                         use_rotary_positional_embeddings=True),
        default_text_tokens=226,  # T5 max_sequence_length of CogVideoXPipeline, padded
        description="CogVideoX-5B transformer: 42 blocks of joint text-video attention, 3D rope (held out)"),
    Preset(
        name="sana-1600m", cls_name="SanaTransformer2DModel",
        config=dict(),  # the class defaults are Sana 1600M 1024px
        tiny_config=dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
                         num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32,
                         caption_channels=32, sample_size=4, patch_size=1),
        default_text_tokens=300,  # max_sequence_length of SanaPipeline (select_index keeps 300 tokens)
        description="Sana 1600M transformer: 20 linear-attention blocks with cross-attention, 32x DC-AE (held out)"),
)}


def get_model(name: str) -> Preset:
    """A preset or a held-out model by name."""
    from cfcompile.presets import PRESETS

    models = {**PRESETS, **HELDOUT}
    try:
        return models[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; presets: {', '.join(PRESETS)}; held out: "
                         f"{', '.join(HELDOUT)}") from None
