"""The plan: what the planner decides for one graph, and how it decides.

Owns the plan IR (`ir`: Plan, GroupPlan, WeightPlan, WeightRead, DeviceState, BudgetError), the extra graph inputs'
order (`inputs.InputLayout`), the resolution of every "auto" option (`resolve`), finding offloaded weights in a
Dynamo graph (`analysis`), the arena layout without a cost model (`layout`) and the cost-model search (`search`).

May import: config, pinned, offload, costmodel. Never the runtime, the compiler or the reports.
"""
