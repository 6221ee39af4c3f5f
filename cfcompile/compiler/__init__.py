"""The compiler: the ``chunkflow`` backend and everything that runs at compile time.

Owns the backend entry and the graph lifecycle (`backend`: rank agreement, planning, routing calls to variants,
calibration, re-planning, `compiled_graphs`), driving the planner with what the device holds (`planner`), the
chunkflow passes on Inductor's post-grad graph (`rewrite`, run by `pass_manager`; invariants in README.md here), the check of generated
code (`verify`) and calibration from timed calls (`calibrate`).

May import every layer below: config, pinned, offload, costmodel, plan, runtime, report.
"""
