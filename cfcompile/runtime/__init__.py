"""What the compiled code calls at run time: the prefetch / wait ops, the copy stream and its events."""

from .ops import copy_stream, prefetch_, wait_  # noqa: F401  (importing registers torch.ops.cfcompile.*)
