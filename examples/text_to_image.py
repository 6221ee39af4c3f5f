"""Text to image with a whole diffusers pipeline under one device-memory budget.

    python examples/text_to_image.py --model black-forest-labs/FLUX.1-dev --memory-budget 12GiB \
        --prompt "a red fox in the snow" --out fox.png
    python examples/text_to_image.py --tiny        # a tiny random-weight Flux on the CPU, in seconds (CI runs it)

`cfcompile.apply` offloads every model component (transformer, both text encoders, VAE) to host memory and
compiles it with the chunkflow backend under one `cfcompile.MemoryBudget`; the pipeline is then called as usual.
``--check`` also runs the plain pipeline first and compares the images (same seed). ``CFCOMPILE_EXAMPLES_TINY=1``
is the same as ``--tiny``.
"""

import time

import numpy as np
import torch

import cfcompile
from cfcompile.pipelines import save_output
from common import load, parser


def main() -> None:
    ap = parser(__doc__, model="black-forest-labs/FLUX.1-dev", tiny="flux", prompt="a photo of a cat",
                size=(1024, 1024), steps=28, budget="12GiB", out="image.png")
    ap.add_argument("--check", action="store_true", help="compare with the plain pipeline (same seed)")
    args = ap.parse_args()
    pipe, call = load(args)

    def generate() -> np.ndarray:
        g = torch.Generator().manual_seed(args.seed)
        return pipe(prompt=args.prompt, generator=g, output_type="np", **call).images[0]

    plain = generate() if args.check else None
    cfcompile.apply(pipe, device=args.device, eager=args.eager, memory_budget=args.memory_budget)
    print("components:", pipe._cfcompile_applied.summary())
    for run in ("first call (compiles)", "second call"):
        t0 = time.perf_counter()
        image = generate()
        print(f"{run}: {time.perf_counter() - t0:.1f} s")
    if args.device.startswith("cuda"):
        print(f"peak device memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    usage = pipe._cfcompile_applied.budget.usage()
    print(f"budget {args.memory_budget}: planned peak {usage['peak_bytes'] / 2**20:.1f} MiB, "
          f"{usage['graphs']} graphs")
    if plain is not None:
        diff = float(np.abs(image - plain).max())
        print(f"max difference to the plain pipeline: {diff:.2e}")
        if diff > 1e-3:
            raise SystemExit("the compiled pipeline's image differs from the plain pipeline's")
    print(f"wrote {save_output(image, args.out)}")
    cfcompile.restore(pipe)   # the plain pipeline again (weights back where they were)


if __name__ == "__main__":
    main()
