"""Reports: what a compile dumps (the plan, the scheduled graph, the schedule table), timelines and plots.

Owns `dump` (files under ``options={"dump": DIR}``) and `visualize` (Perfetto timelines, PNGs, memory-latency
curves). Reads plans and predictions; changes nothing.

May import: config, costmodel, plan. Never the runtime or the compiler.
"""
