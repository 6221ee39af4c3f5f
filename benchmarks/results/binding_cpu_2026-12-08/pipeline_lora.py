"""Pipeline-level LoRA through cfcompile.apply (CPU, tiny FluxPipeline): after each of diffusers' pipeline LoRA calls,
the applied pipeline's image against the plain pipeline's (same seed), max |diff|; lora_effect: the plain image
against the one before any LoRA (what a call that missed the change would be off by). Run from the repo root:
    OMP_NUM_THREADS=1 python benchmarks/results/binding_cpu_2026-12-08/pipeline_lora.py [te]   # te: CLIP LoRA too
"""
import sys; sys.path.insert(0, "tests")
import torch, cfcompile
from torch import nn
from cfcompile.tiny_pipelines import TINY_CALLS, tiny_pipeline
def run(pipe):
    return pipe(prompt="a photo of a cat", generator=torch.Generator().manual_seed(0), output_type="pt", **TINY_CALLS["flux"]).images
def lora_sd(pipe, seed, r=4, te=True):
    g = torch.Generator().manual_seed(seed); out = {}
    for prefix, mod, targets in (("transformer", pipe.transformer, ("to_q", "to_k", "to_v")), ("text_encoder", pipe.text_encoder, ("q_proj", "v_proj"))):
        if prefix == "text_encoder" and not te: continue
        for name, m in mod.named_modules():
            if isinstance(m, nn.Linear) and name.split(".")[-1] in targets:
                out[f"{prefix}.{name}.lora_A.weight"] = torch.randn(r, m.in_features, generator=g) * 0.3
                out[f"{prefix}.{name}.lora_B.weight"] = torch.randn(m.out_features, r, generator=g) * 0.3
    return out
TE = len(sys.argv) > 1
plain = tiny_pipeline("flux"); app = tiny_pipeline("flux")
cfcompile.apply(app, device="cpu", memory_budget="256MiB")
SD = lora_sd(plain, 1, te=TE)
print("keys", len(SD))
d = lambda a, b: (a - b).abs().max().item()
base = run(plain)
print("base", d(run(app), base))
for step, f in [
    ("load_lora_weights", lambda p: p.load_lora_weights(dict(SD), adapter_name="a")),
    ("set_adapters 0.5", lambda p: p.set_adapters(["a"], adapter_weights=[0.5])),
    ("fuse_lora", lambda p: p.fuse_lora(lora_scale=1.0)),
    ("unfuse_lora", lambda p: p.unfuse_lora()),
    ("disable_lora", lambda p: p.disable_lora()),
    ("enable_lora", lambda p: p.enable_lora()),
    ("unload_lora_weights", lambda p: p.unload_lora_weights()),
]:
    try:
        f(plain); f(app)
        a, b = run(app), run(plain)
        print(step, d(a, b), "lora_effect", d(b, base))
    except Exception as e:
        print(step, "raised", type(e).__name__, str(e)[:300])
