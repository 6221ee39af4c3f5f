"""Check the order the plan asked for in Inductor's generated Python wrapper code.

Each streamed slot is a graph input ``argN_1``. In the generated ``call()`` the slot's prefetch must come first,
then its wait, and only then any other line that reads it (a kernel call or a ``reinterpret_tensor`` of it); and no
line may read it after the prefetch of a slot that overwrites its bytes (a wrap-around prefetch for the next call,
the one whose last argument is ``1``, overwrites its own slot too). The fence arguments of prefetches are not
reads.
"""

from __future__ import annotations

import re


def check_generated_order(code: str, slot_inputs: list[int],
                          clobbers: dict[int, list[int]] | None = None) -> list[str]:
    """Violations found in ``code`` (empty when the order holds); ``clobbers[j]`` = slots prefetch j overwrites."""
    lines = code[code.index("def call(self, args):"):].splitlines()
    indent = len(code[:code.index("def call(self, args):")].rsplit("\n", 1)[-1])
    end = next((i for i, l in enumerate(lines[1:], 1) if l.strip() and len(l) - len(l.lstrip()) <= indent),
               len(lines))
    lines = lines[:end]
    errors = []
    overwritten_at: dict[int, int] = {}  # slot index -> first line of a prefetch that overwrites it
    for key, ks in (clobbers or {}).items():
        tail = isinstance(key, tuple)  # ("next", j): the wrap-around prefetch for the next call
        name = f"arg{slot_inputs[key[1] if tail else key]}_1"
        line = next((i for i, l in enumerate(lines)
                     if l.strip().startswith(f"torch.ops.cfcompile.prefetch_.default({name},")
                     and _is_tail(l) == tail), None)
        for k in ks:
            if line is not None:
                overwritten_at[k] = min(overwritten_at.get(k, line), line)
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
                if first_arg == name and prefetch is None and not _is_tail(stripped):
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
            if j in overwritten_at and i > overwritten_at[j]:
                errors.append(f"slot {j} ({name}): read at line {i} after a prefetch overwrote it at line "
                              f"{overwritten_at[j]}: {stripped[:120]}")
    return errors


def _is_tail(line: str) -> bool:
    """A prefetch for the next call: phase 1, the op's last argument (after ``overlap``)."""
    return re.search(r"(True|False),\s*1\)\s*$", line.strip()) is not None
