"""Elastic serving, layer two: requests as task DAGs, policies, cost tables, and a simulator of a GPU pool.

A request (``Request``) compiles to ``text_encode -> prepare -> denoise chunks -> vae_decode`` (``build_tasks``);
a policy (``make_policy``: static-k, fcfs, srtf, edf, edf-triage, memory-aware, preempt, or ``module:factory``) turns
events into assignments (a task with its group of GPUs); ``simulate`` drives it over a deterministic discrete-event
model of the pool, costs from a ``CostTable`` (``t = a·x² + b·x + c`` per stage and SP degree: predicted by
``plan_model`` without a GPU, ``costs_from_model`` / ``shipped_costs``, and calibrated or refit from measurements),
memory-aware (resident, loaded or streamed models, per-GPU memory). ``generate_workload`` makes GF-DiT-like traces.

    costs = shipped_costs("H100")
    reqs = generate_workload("gfdit", gpus=8, minutes=10, load=1.0, seed=0, costs=costs)
    simulate(reqs, 8, "memory-aware", costs, SimConfig(mem_gb=(80.0,) * 4 + (24.0,) * 4)).write("out/")
"""

from .costs import CostTable, ModelCosts, calibrate, fit_quadratic, refit, synthetic_costs
from .planned import costs_from_model, load_costs, shipped_costs
from .policies import (FCFS, SRTF, EDFBestFit, ElasticPolicy, MemoryAware, Policy, Preemptive, QueuePolicy, StaticSP,
                       View, WorkerEvent, make_policy)
from .requests import Request, Task, build_tasks
from .simulator import PolicyError, Record, Result, SimConfig, simulate
from .workload import generate_workload, read_workload, write_workload

__all__ = ["Request", "Task", "build_tasks", "CostTable", "ModelCosts", "fit_quadratic", "refit", "calibrate",
           "synthetic_costs", "costs_from_model", "load_costs", "shipped_costs", "Policy", "View", "WorkerEvent",
           "QueuePolicy", "ElasticPolicy", "StaticSP", "FCFS", "SRTF", "EDFBestFit", "MemoryAware", "Preemptive",
           "make_policy", "simulate", "Result", "Record", "SimConfig", "PolicyError",
           "generate_workload", "read_workload", "write_workload"]
