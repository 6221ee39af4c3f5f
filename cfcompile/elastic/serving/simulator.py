"""Deterministic discrete-event simulator of a GPU pool serving DiT requests under a policy.

Events sit on a heap keyed by ``(time, sequence number)``; all events of one instant are handled together:
task ends (GPUs freed, dependents made runnable), then arrivals, each shown to the policy with
``view.events_pending`` True, then one ``on_tasks_runnable`` with everything that became runnable. Every
assignment is checked (runnable, GPUs free and in range, a free holder of the request's state) and started at
once::

    [reshard over dst ∪ sender]  ->  [model load, if some GPU lacks it]  ->  [compute]
     only if some dst GPU lacks      max over the group                      cost table; streamed where a GPU
     the request's state                                                     cannot hold the model (priced at
                                                                             the group's smallest memory)

Times are seconds (costs in the table are ms). Same requests, policy and config give the same result, byte for
byte, on any machine: no wall clock, no unordered iteration, ties broken by sequence numbers.

``SimConfig.duration_error`` (default 0: every task runs exactly its predicted time) makes each task's table time
differ from the prediction by a factor drawn per (request id, task index) from a seeded lognormal
(:func:`duration_factor`): the simulated end moves, what policies see (the cost table, ``View.free_at``) stays
the prediction. A policy with ``wake_on_overrun = True`` (``MemoryAware(overrun="wake")``) also gets an instant at
the predicted end of every task that runs past it (an event with nothing in it, handled after arrivals; the policy
is asked with ``on_tasks_runnable(())``): deterministic, and never emitted at ``duration_error`` 0 or for another
policy, so their results are unchanged.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import Mapping, Sequence

from .costs import CostTable, synthetic_costs
from .placement import Memory, default_preload
from .policies import Policy, WorkerEvent, make_policy
from .requests import Request, Task, build_tasks, reshard_task

logger = logging.getLogger(__name__)

_END, _RESHARD_END, _ARRIVAL, _WAKE = 0, 1, 2, 3  # order of handling within one instant


class PolicyError(ValueError):
    """A policy returned an assignment the pool cannot run."""


@dataclass(frozen=True)
class SimConfig:
    """Pool and task settings of a simulation; validated on construction."""

    chunk_steps: int = 5
    """Denoising steps per chunk task (policies may re-place a request at every chunk boundary)."""
    mem_gb: float | tuple[float, ...] = 96.0
    """Memory per GPU (one number for all, or one per GPU)."""
    link_gbps: float = 50.0
    """GPU-to-GPU bandwidth a reshard sends at, GB/s."""
    link_latency_ms: float = 2.0
    """Fixed cost of a reshard."""
    load_gbps: float = 20.0
    """Host-to-device bandwidth of a model load (when the table gives no ``load_ms``), GB/s."""
    preload: Mapping[int, Sequence[str]] | None = None
    """GPU -> models resident at time 0; None = the workload's models spread round robin (as many as fit)."""
    sender_wait: bool = False
    """False (default): placing a task whose request's state sits only on busy GPUs is an error (the policy waits
    for a holder to free). True: as GF-DiT's runtime, the task's GPUs are claimed at once and stay idle until the
    first holder frees; then the reshard (over the group and that holder) and the task run."""
    duration_error: float = 0.0
    """Prediction error: each task's time from the cost table (compute, streaming included; not the model load or a
    reshard) is multiplied by ``exp(duration_error * z)``, z standard normal drawn from (``duration_seed``, request
    id, task index) alone (:func:`duration_factor`; lognormal with median 1, so 0.1 is about +-10% typical error).
    Policies still see predictions: the cost table and ``View.free_at`` are unchanged; only the simulated end of the
    task moves. 0 (default): every task runs exactly its predicted time."""
    duration_seed: int = 0
    """Seed of the ``duration_error`` draws."""

    def __post_init__(self):
        if isinstance(self.chunk_steps, bool) or not isinstance(self.chunk_steps, int) or self.chunk_steps < 1:
            raise ValueError(f"SimConfig: chunk_steps must be a positive int, got {self.chunk_steps!r}")
        mem = self.mem_gb if isinstance(self.mem_gb, (tuple, list)) else (self.mem_gb,)
        for name, vals in (("mem_gb", mem), ("link_gbps", (self.link_gbps,)), ("load_gbps", (self.load_gbps,))):
            if not vals or any(not isinstance(v, (int, float)) or not v > 0 for v in vals):
                raise ValueError(f"SimConfig: {name} must be positive, got {getattr(self, name)!r}")
        if not self.link_latency_ms >= 0:
            raise ValueError(f"SimConfig: link_latency_ms must be >= 0, got {self.link_latency_ms!r}")
        e = self.duration_error
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 <= e < math.inf:
            raise ValueError(f"SimConfig: duration_error must be a finite number >= 0 (the lognormal sigma of the "
                             f"actual / predicted task time; 0 = no error), got {e!r}")
        if isinstance(self.duration_seed, bool) or not isinstance(self.duration_seed, int):
            raise ValueError(f"SimConfig: duration_seed must be an int, got {self.duration_seed!r}")


_NORMAL = NormalDist()


def duration_factor(sigma: float, seed: int, request_id: str, index: int) -> float:
    """Actual / predicted time of task ``index`` of ``request_id`` under ``SimConfig.duration_error = sigma``:
    ``exp(sigma * z)``, z the standard normal quantile of a uniform hashed (BLAKE2b) from (seed, request id, index),
    so a task's factor depends on nothing else (not the policy, not the order of events). 1.0 when sigma is 0."""
    if not sigma:
        return 1.0
    h = hashlib.blake2b(f"{seed}\x00{request_id}\x00{index}".encode(), digest_size=8).digest()
    u = ((int.from_bytes(h, "big") >> 11) + 0.5) / (1 << 53)  # in (0, 1)
    return math.exp(sigma * _NORMAL.inv_cdf(u))


@dataclass(frozen=True)
class Record:
    """One task (or reshard) as it ran."""

    task: Task
    """The task with its group (a reshard's group is dst ∪ sender)."""
    start_s: float
    end_s: float
    load_ms: float = 0.0
    """Model load at the start, included in [start_s, end_s)."""
    loads: tuple[int, ...] = ()
    """GPUs that loaded the model."""
    streamed: bool = False
    factor: float = 1.0
    """Actual / predicted time of the task's compute (``SimConfig.duration_error``); the load is as predicted."""


@dataclass
class Result:
    """What a simulation produced; :meth:`write` dumps ``summary.json`` and ``trace.json`` (and a plot)."""

    policy: str
    gpus: int
    requests: list[Request]
    """The requests, deadlines resolved."""
    finish_s: dict[str, float]
    """Request id -> completion time."""
    records: list[Record]
    """Tasks and reshards in start order."""
    config: SimConfig = field(default_factory=SimConfig)

    @property
    def summary(self) -> dict:
        from .report import summarize

        return summarize(self)

    def write(self, out_dir, plot: bool = False) -> Path:
        """Write ``summary.json``, ``trace.json`` (Chrome / Perfetto) and, with ``plot``, ``timeline.png``."""
        from .report import write_result

        return write_result(self, Path(out_dir), plot=plot)


class _Req:
    __slots__ = ("request", "tasks", "started", "holders", "reshards", "suffix")

    def __init__(self, request: Request, tasks: list[Task]):
        self.request, self.tasks = request, tasks
        self.started = 0  # tasks are a chain: the first ``started`` have been placed
        self.holders: tuple[int, ...] = ()
        self.reshards = 0
        self.suffix: dict[tuple, list[float]] = {}  # (degree, streamed, mem) -> remaining seconds from task i

    def remaining_s(self, costs: CostTable, degree: int, streamed: bool = False, mem_gb: float | None = None):
        key = (degree, streamed, mem_gb)
        suf = self.suffix.get(key)
        if suf is None:
            m = costs.model(self.request.model)
            ms = [m.task_ms(self.request, t, degree, streamed, mem_gb) for t in self.tasks]
            suf = self.suffix[key] = [sum(ms[i:]) / 1e3 for i in range(len(ms) + 1)]
        return suf[self.started]


class _View:
    """The read-only view policies get (see policies.View)."""

    def __init__(self, sim: "_Sim"):
        self._sim = sim
        self.gpus = sim.gpus
        self.costs = sim.costs
        self.events_pending = False

    @property
    def now(self) -> float:
        return self._sim.now

    @property
    def free(self) -> tuple[int, ...]:
        return self._sim.free()

    def request(self, rid):
        return self._sim.reqs[rid].request

    def holders(self, rid):
        return self._sim.reqs[rid].holders

    def ready_since(self, task_id):
        return self._sim.runnable[task_id][1]

    def degrees(self, model):
        return self.costs.model(model).degrees

    def remaining_s(self, rid, degree, mem_gb=None):
        """The request's remaining compute at ``degree`` with its model resident (what a profiled table says);
        with ``mem_gb``, streamed on GPUs of that memory (as :meth:`group_s` prices a group that cannot hold it)."""
        return self._sim.reqs[rid].remaining_s(self.costs, degree, mem_gb is not None, mem_gb)

    def group_s(self, rid, group):
        """The request's remaining time if it ran on ``group`` from now on: its model load there, then every
        remaining task at ``len(group)``, streamed at the group's smallest memory if some GPU cannot hold it."""
        r, mem = self._sim.reqs[rid], self._sim.memory
        prep = mem.plan(r.request.model, group)
        rest = r.remaining_s(self.costs, len(group), prep.streamed, mem.group_gb(group) if prep.streamed else None)
        return prep.load_ms / 1e3 + rest

    def task_s(self, task, group):
        r, mem = self._sim.reqs[task.request], self._sim.memory
        prep = mem.plan(r.request.model, group)
        m = self.costs.model(r.request.model)
        return (prep.load_ms + m.task_ms(r.request, task, len(group), prep.streamed, mem.group_gb(group))) / 1e3

    def free_at(self, gpu):
        """When ``gpu`` is predicted to be free: now if idle, else the start of what runs there plus its predicted
        time (reshard, model load, compute: the cost table's, which is also what the simulator charges unless
        ``SimConfig.duration_error``; a task running past its prediction is predicted to end now), math.inf for GPUs
        claimed by a task waiting for its state's holder (``sender_wait``)."""
        sim = self._sim
        return sim.now if sim.busy[gpu] is None else max(sim.now, sim.until[gpu])

    def resident(self, gpu):
        return self._sim.memory.resident(gpu)

    def mem_gb(self, gpu):
        return self._sim.memory.mem_gb[gpu]

    def fits(self, model, gpu):
        return self._sim.memory.fits(model, gpu)

    def load_s(self, model):
        mem = self._sim.memory
        return mem.load_ms(model) / 1e3 if mem.fits_anywhere(model) else 0.0


class _Sim:
    def __init__(self, requests: list[Request], gpus: int, policy: Policy, costs: CostTable, config: SimConfig):
        self.gpus, self.policy, self.costs, self.config = gpus, policy, costs, config
        mem = config.mem_gb if isinstance(config.mem_gb, (tuple, list)) else (config.mem_gb,) * gpus
        if len(mem) != gpus:
            raise ValueError(f"SimConfig.mem_gb has {len(mem)} entries for {gpus} GPUs")
        models = list(dict.fromkeys(r.model for r in requests))
        for name in models:
            costs.model(name)  # unknown model: ValueError naming the known ones
        preload = config.preload if config.preload is not None else default_preload(gpus, models)
        self.memory = Memory(mem, costs, config.load_gbps, preload)
        unfit = [n for n in models if not self.memory.fits_anywhere(n)]
        if unfit:
            logger.info("models %s do not fit on any GPU: they run streamed", unfit)
        self.requests = requests
        self.reqs: dict[str, _Req] = {}
        self.task_req: dict[str, str] = {}
        self.runnable: dict[str, tuple[Task, float]] = {}  # task id -> (task, runnable since)
        self.reshard_dst: dict[str, tuple[int, ...]] = {}  # running reshard -> the group its task runs on
        self.busy: list[str | None] = [None] * gpus
        self.until: list[float] = [0.0] * gpus  # busy GPU -> predicted end of what runs there (view.free_at)
        self._free: tuple[int, ...] | None = None
        self.heap: list = []
        self.seq = 0
        self.now = 0.0
        self.records: list[Record] = []
        self.finish_s: dict[str, float] = {}
        self.deferred: list[tuple[Task, Task]] = []  # (assignment, runnable entry) waiting for a holder to free
        self.view = _View(self)
        self.wake = bool(getattr(policy, "wake_on_overrun", False))  # Policy.wake_on_overrun: _WAKE events

    def free(self) -> tuple[int, ...]:
        if self._free is None:
            self._free = tuple(g for g, b in enumerate(self.busy) if b is None)
        return self._free

    def _push(self, t: float, kind: int, payload) -> None:
        heapq.heappush(self.heap, (t, self.seq, kind, payload))
        self.seq += 1

    def run(self) -> None:
        for r in sorted(self.requests, key=lambda r: (r.arrival_s, r.id)):
            self._push(r.arrival_s, _ARRIVAL, r)
        while self.heap:
            self.now = t = self.heap[0][0]
            batch = []
            while self.heap and self.heap[0][0] == t:
                batch.append(heapq.heappop(self.heap))
            batch.sort(key=lambda e: (e[2], e[1]))
            newly: list[Task] = []
            self.view.events_pending = True
            for _, _, kind, payload in batch:
                if kind == _ARRIVAL:
                    newly.extend(self._arrive(payload))
                elif kind == _WAKE:
                    pass  # a task runs past its predicted end: the policy is asked again below
                else:
                    newly.extend(self._end(kind, payload))
            self.view.events_pending = False
            self._apply(self.policy.on_tasks_runnable(tuple(newly), self.view))
        left = [rid for rid in self.reqs if rid not in self.finish_s]
        if left:
            waiting = sorted(self.runnable)[:3]
            raise RuntimeError(f"policy {self.policy.name!r} left {len(left)} requests unfinished with every GPU idle "
                               f"and nothing more to happen (runnable: {waiting}...); a policy must place runnable "
                               "tasks when GPUs they can use are free")

    def _arrive(self, request: Request) -> list[Task]:
        tasks = build_tasks(request, self.config.chunk_steps)
        r = self.reqs[request.id] = _Req(request, tasks)
        for t in tasks:
            self.task_req[t.id] = request.id
        self._apply(self.policy.on_request_submitted(request, tuple(tasks), self.view))
        root = [t for t in tasks if not t.deps]
        for t in root:
            self.runnable[t.id] = (t, self.now)
        logger.debug("%.3f arrival %s (%d tasks)", self.now, request.id, len(r.tasks))
        return root

    def _end(self, kind: int, rec: Record) -> list[Task]:
        task = rec.task
        newly = []
        if kind == _RESHARD_END:
            keep = self.reshard_dst.pop(task.id)
            for g in task.group:
                if g not in keep:
                    self.busy[g] = None
            self._free = None
            event = WorkerEvent("reshard_done", task, self.now)
        else:
            for g in task.group:
                self.busy[g] = None
            self._free = None
            r = self.reqs[task.request]
            r.holders = task.group
            i = task.index + 1
            if i < len(r.tasks):
                nxt = r.tasks[i]
                self.runnable[nxt.id] = (nxt, self.now)
                newly.append(nxt)
            else:
                r.holders = ()
                self.finish_s[task.request] = self.now
            event = WorkerEvent("task_done", task, self.now)
        if self.deferred:
            self._release_deferred()
        self._apply(self.policy.on_worker_event(event, self.view))
        return newly

    def _release_deferred(self) -> None:
        """Start the waiting assignments (in placement order) whose request has a holder free again."""
        waiting, self.deferred = self.deferred, []
        for a, task in waiting:
            r = self.reqs[self.task_req[a.id]]
            free_holders = [g for g in r.holders if self.busy[g] is None]
            if not free_holders:
                self.deferred.append((a, task))
                continue
            for g in a.group:
                self.busy[g] = None
            self._launch(task, r, (free_holders[0],))

    def _apply(self, assignments) -> None:
        for a in assignments or ():
            self._start(a)

    def _start(self, a: Task) -> None:
        name = self.policy.name
        if not isinstance(a, Task) or a.group is None:
            raise PolicyError(f"policy {name!r} returned {a!r}; an assignment is a runnable task with its group "
                              "set: task.on(group)")
        entry = self.runnable.get(a.id)
        if entry is None:
            raise PolicyError(f"policy {name!r} placed {a.id}, which is not runnable (unknown, already placed or "
                              "its inputs are not done)")
        group = a.group
        if (not group or len(set(group)) != len(group)
                or any(isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < self.gpus for g in group)):
            raise PolicyError(f"policy {name!r} placed {a.id} on {group}; a group is distinct GPUs in "
                              f"0..{self.gpus - 1}")
        r = self.reqs[self.task_req[a.id]]
        holders = r.holders
        new = [g for g in group if g not in holders] if holders else []
        sender: tuple[int, ...] = ()
        if new and not any(g in group for g in holders):
            free_holders = [g for g in holders if self.busy[g] is None]
            if free_holders:
                sender = (free_holders[0],)
            elif not self.config.sender_wait:
                raise PolicyError(f"policy {name!r} placed {a.id} on {group}, but the request's state is on "
                                  f"{holders}, all busy; include a free holder or wait")
        busy = [g for g in group + sender if self.busy[g] is not None]
        if busy:
            raise PolicyError(f"policy {name!r} placed {a.id} on {group}, but GPUs {busy} are running "
                              f"{sorted({self.busy[g] for g in busy})}")
        del self.runnable[a.id]
        task = entry[0].on(group)
        if new and not sender and not any(g in group for g in holders):  # sender_wait: claim the GPUs, wait
            for g in group:
                self.busy[g] = f"{task.id}@wait"
                self.until[g] = math.inf
            self._free = None
            r.started = task.index + 1
            self.deferred.append((a, task))
            logger.debug("%.3f %s waits on %s for a holder of %s", self.now, task.id, group, holders)
            return
        self._launch(task, r, sender)

    def _launch(self, task: Task, r: "_Req", sender: tuple[int, ...]) -> None:
        group, holders = task.group, r.holders
        new = [g for g in group if g not in holders] if holders else []
        t0 = self.now
        if new:
            r.reshards += 1
            rs = reshard_task(task, r.reshards, holders, group + sender)
            ms = self.config.link_latency_ms + (self.costs.model(r.request.model).state_size(r.request)
                                                * len(new) / (self.config.link_gbps * 1e9) * 1e3)
            rec = Record(rs, t0, t0 + ms / 1e3)
            self.records.append(rec)
            for g in rs.group:
                self.busy[g] = rs.id
                self.until[g] = rec.end_s
            self.reshard_dst[rs.id] = group
            self._push(rec.end_s, _RESHARD_END, rec)
            t0 = rec.end_s
        prep = self.memory.apply(r.request.model, group)
        compute = self.costs.model(r.request.model).task_ms(r.request, task, len(group), prep.streamed,
                                                            self.memory.group_gb(group))
        ms = prep.load_ms + compute
        cfg = self.config
        f = duration_factor(cfg.duration_error, cfg.duration_seed, task.request, task.index)
        # (f == 1.0: compute * f is compute exactly, so no error gives the times it gave before the option)
        rec = Record(task, t0, t0 + (prep.load_ms + compute * f) / 1e3, prep.load_ms, prep.loads, prep.streamed, f)
        self.records.append(rec)
        predicted_end = t0 + ms / 1e3
        for g in group:
            self.busy[g] = task.id
            self.until[g] = predicted_end
        self._free = None
        r.started = task.index + 1
        self._push(rec.end_s, _END, rec)
        if rec.end_s > predicted_end and self.wake:
            self._push(predicted_end, _WAKE, None)
        logger.debug("%.3f start %s on %s for %.1f ms%s", self.now, task.id, group, ms,
                     " after a reshard" if new else "")


def resolve_deadlines(requests: Sequence[Request], costs: CostTable) -> list[Request]:
    """Requests with ``slo_scale`` and no ``deadline_s`` get ``arrival + slo_scale x single-GPU time``."""
    out = []
    for r in requests:
        if r.deadline_s is None and r.slo_scale is not None:
            r = replace(r, deadline_s=r.arrival_s + r.slo_scale * costs.single_gpu_s(r))
        out.append(r)
    return out


def simulate(requests: Sequence[Request], gpus: int, policy, costs: CostTable | None = None,
             config: SimConfig | None = None, **policy_kwargs) -> Result:
    """Run ``requests`` on ``gpus`` GPUs under ``policy`` (an object or a ``make_policy`` name) and return a Result.

    ``costs`` defaults to :func:`synthetic_costs`; ``config`` to :class:`SimConfig()`. Raises ValueError for bad
    input (unknown model, duplicate ids), PolicyError for an assignment the pool cannot run.
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"simulate: gpus must be a positive int, got {gpus!r}")
    costs = costs or synthetic_costs()
    config = config or SimConfig()
    policy = make_policy(policy, **policy_kwargs)
    ids = [r.id for r in requests]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"simulate: request ids must be unique, {dup} repeat")
    reqs = resolve_deadlines(requests, costs)
    sim = _Sim(reqs, gpus, policy, costs, config)
    sim.run()
    name = getattr(policy, "name", type(policy).__name__)
    result = Result(name, gpus, reqs, sim.finish_s, sim.records, config)
    if logger.isEnabledFor(logging.INFO):
        s = result.summary
        logger.info("%s on %d GPUs: %d/%d requests, SLO %.3f, goodput %.4f rps, %d reshards", name, gpus,
                    s["completed"], s["requests"], s["slo_attainment"], s["goodput_rps"], s["reshards"])
    return result


__all__ = ["simulate", "Result", "Record", "SimConfig", "PolicyError", "resolve_deadlines", "duration_factor"]
