"""What the pipeline examples share: their common options and the tiny-or-real pipeline choice."""

import argparse
import os

import torch


def parser(doc: str, *, model: str, tiny: str, prompt: str, size: tuple[int, int], steps: int, budget: str,
           out: str) -> argparse.ArgumentParser:
    """Options of every pipeline example; ``--tiny`` (or ``CFCOMPILE_EXAMPLES_TINY=1``) picks the tiny ``tiny``
    pipeline with random weights (no download) and a 256 MiB budget."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--model", default=model, help="local folder or hub id (from the hub cache)")
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("CFCOMPILE_EXAMPLES_TINY") == "1",
                    help=f"a tiny {tiny} with random weights and local tokenizers, no download (CPU: seconds of "
                         f"running, a minute or more of compiling)")
    ap.add_argument("--prompt", default=prompt)
    ap.add_argument("--height", type=int, default=size[0])
    ap.add_argument("--width", type=int, default=size[1])
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--memory-budget", help=f"device memory for all components together (default {budget}; "
                                            f"256MiB with --tiny)")
    ap.add_argument("--eager", action="append", default=[], help="a component to offload but not compile")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=out)
    ap.set_defaults(tiny_name=tiny, real_budget=budget)
    return ap


def load(args, **given):
    """The pipeline and its call arguments (`cfcompile.pipelines.load_pipeline`, `call_arguments`): the tiny one
    with ``--tiny``, else ``--model`` from a local folder or the hub cache (never downloaded) in bfloat16 on the CPU
    (`cfcompile.apply` moves what is needed). ``given``: more of `call_arguments`' (e.g. ``frames``)."""
    from cfcompile.pipelines import call_arguments, load_pipeline

    args.memory_budget = args.memory_budget or ("256MiB" if args.tiny else args.real_budget)
    if args.tiny:
        pipe, name = load_pipeline(args.tiny_name, tiny=True, dtype=torch.float32)
        return pipe, call_arguments(name, tiny=True)
    pipe, name = load_pipeline(model=args.model, dtype=torch.bfloat16)
    return pipe, call_arguments(name, height=args.height, width=args.width, steps=args.steps, **given)
