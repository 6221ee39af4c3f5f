"""The runtime: what compiled code calls and the device memory it uses; a leaf that imports no compiler code.

Owns the custom ops and the copy stream (`ops`), the arenas, resident copies and per-graph inputs (`arena`,
including the registry of graphs under a shared `MemoryBudget`), what a new graph must count of the device's memory
(`budget`), call-time binding of the weights a call passes (`binding`) and timing marks (`timing`).

May import: config, pinned, offload, plan (the IR). Never the compiler or the reports.
"""

from .ops import copy_stream, prefetch_, wait_  # noqa: F401  (importing registers torch.ops.cfcompile.*)
