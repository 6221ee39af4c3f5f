"""Text to image with a whole diffusers pipeline under one device-memory budget.

    python examples/text_to_image.py --model black-forest-labs/FLUX.1-dev --memory-budget 12GiB \
        --prompt "a red fox in the snow" --out fox.png
    python examples/text_to_image.py --tiny        # a tiny random-weight Flux on the CPU, in seconds (CI runs it)

`cfcompile.apply` offloads every model component (transformer, both text encoders, VAE) to host memory and
compiles it with the chunkflow backend under one `cfcompile.MemoryBudget`; the pipeline is then called as usual.
``--check`` also runs the plain pipeline first and compares the images (same seed). ``CFCOMPILE_EXAMPLES_TINY=1``
is the same as ``--tiny``.
"""

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image

import cfcompile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="black-forest-labs/FLUX.1-dev", help="local folder or hub id (hub cache)")
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("CFCOMPILE_EXAMPLES_TINY") == "1",
                    help="a tiny Flux with random weights, no download")
    ap.add_argument("--prompt", default="a photo of a cat")
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--memory-budget", help="device memory for all components together (default 12GiB; "
                                            "256MiB with --tiny)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="compare with the plain pipeline (same seed)")
    ap.add_argument("--out", default="image.png")
    args = ap.parse_args()
    args.memory_budget = args.memory_budget or ("256MiB" if args.tiny else "12GiB")

    if args.tiny:
        from cfcompile.tiny_pipelines import TINY_CALLS, tiny_pipeline

        pipe, call = tiny_pipeline("flux"), dict(TINY_CALLS["flux"])
    else:
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(args.model, torch_dtype=torch.bfloat16)   # on the CPU
        call = dict(height=args.height, width=args.width, num_inference_steps=args.steps)

    def generate() -> np.ndarray:
        g = torch.Generator().manual_seed(args.seed)
        return pipe(prompt=args.prompt, generator=g, output_type="np", **call).images[0]

    plain = generate() if args.check else None
    cfcompile.apply(pipe, device=args.device, memory_budget=args.memory_budget)
    print("components:", pipe._cfcompile_applied.summary())
    for run in ("first call (compiles)", "second call"):
        t0 = time.perf_counter()
        image = generate()
        print(f"{run}: {time.perf_counter() - t0:.1f} s")
    if args.device.startswith("cuda"):
        print(f"peak device memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    usage = pipe._cfcompile_applied.budget.usage()
    print(f"budget {args.memory_budget}: planned peak {usage['peak_bytes'] / 2**20:.1f} MiB over {usage['graphs']} graphs")
    if plain is not None:
        diff = float(np.abs(image - plain).max())
        print(f"max difference to the plain pipeline: {diff:.2e}")
        if diff > 1e-3:
            raise SystemExit("the compiled pipeline's image differs from the plain pipeline's")
    Image.fromarray((image * 255).round().astype(np.uint8)).save(args.out)
    print(f"wrote {args.out}")
    cfcompile.restore(pipe)   # the plain pipeline again (weights back where they were)


if __name__ == "__main__":
    main()
