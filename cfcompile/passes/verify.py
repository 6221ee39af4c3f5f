"""Check the order the plan asked for in Inductor's generated Python wrapper code.

Each streamed slot is a graph input ``argN_1``. In the generated ``call()`` the slot's prefetch must come first,
then its wait, and only then any other line that reads it (a kernel call or a ``reinterpret_tensor`` of it). The
fence arguments of other prefetches are not reads.
"""

from __future__ import annotations

import re


def check_generated_order(code: str, n_inputs: int, slot_inputs: list[int]) -> list[str]:
    """Return the violations found in ``code`` (empty when the order holds)."""
    body = code[code.index("def call(self, args):"):]
    lines = body.splitlines()
    errors = []
    for j, idx in enumerate(slot_inputs):
        name = f"arg{idx}_1"
        word = re.compile(rf"\b{name}\b")
        prefetch = wait = None
        for i, line in enumerate(lines):
            if not word.search(line):
                continue
            stripped = line.strip()
            if stripped.startswith("torch.ops.cfcompile.prefetch_"):
                # ``prefetch_(slot, [fences], ...)``: the first argument is the slot being written.
                first_arg = stripped.split("(", 1)[1].split(",", 1)[0].strip()
                if first_arg == name and prefetch is None:
                    prefetch = i
                continue
            if stripped.startswith("torch.ops.cfcompile.wait_"):
                wait = i if wait is None else wait
                if prefetch is None:
                    errors.append(f"slot {j} ({name}): wait at line {i} before any prefetch")
                continue
            if stripped.startswith(("del ", "assert_size_stride", "assert_alignment")) or "= args" in stripped:
                continue
            if wait is None:
                errors.append(f"slot {j} ({name}): read before its wait at line {i}: {stripped[:120]}")
    return errors
