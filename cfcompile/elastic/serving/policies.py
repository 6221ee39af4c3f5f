"""Scheduling policies: events in, assignments out; the simulator and the server drive the same objects.

The protocol (:class:`Policy`) has three hooks, each handed the event and a read-only :class:`View` of the pool,
each returning assignments: runnable tasks with ``group`` set (``task.on(group)``). Policies are deterministic and
do no I/O. Per instant the driver delivers worker events, then arrivals (``view.events_pending`` is True for
those), then one ``on_tasks_runnable`` with every task that became runnable (``events_pending`` False), so a
policy can decide once per instant. Placing a task where its request's state is not makes the driver run a
reshard first; at least one GPU holding the state (``view.holders``) must be free.

Built in (``make_policy(name)``)::

    static-k      the pool cut into fixed groups of k GPUs, requests pinned to one group, FCFS (the baseline)
    fcfs          arrival order, each DiT task at the degree predicted fastest among those that fit
    srtf          shortest remaining single-GPU time first, same degrees as fcfs
    edf           EDF best-fit: earliest deadline first, the smallest degree whose predicted finish meets the
                  deadline (else the fastest), spare GPUs to urgent requests only where wider is faster
    memory-aware  EDF best-fit over groups rather than degrees: each candidate group is priced with its model
                  load and, where a GPU cannot hold the model, the streamed step time (``view.group_s``); groups
                  holding the model resident, then GPUs it fits on, come first, and a pool of small GPUs serves a
                  model that fits none of them by streaming; requests that can no longer meet their deadline go
                  last (triage; ``memory-aware-notriage`` without it)
    preempt       priorities with aging on top of EDF best-fit; at each chunk boundary a lower request yields
                  GPUs (demoted to what is left, or paused); a task waiting ``starve_s`` goes first, oldest
                  request first, so the oldest request's task starts within starve_s + the longest task
    module:func   a user's factory, called with the keyword arguments given to make_policy

Groups are formed on demand from free GPUs, preferring, in order: GPUs holding the request's state (no
reshard), GPUs no other waiting request's state sits on, low ranks. fcfs, srtf, edf and preempt price degrees with
the cost table's resident times, as a profiled table (GF-DiT's) does, and ignore which GPU holds which model: the
simulator still charges loads and streaming, so memory-aware's gain over edf is what knowing memory is worth.
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from .costs import CostTable
from .requests import VAE_DECODE, Request, Task

logger = logging.getLogger(__name__)

HOOKS = ("on_request_submitted", "on_tasks_runnable", "on_worker_event")


@dataclass(frozen=True)
class WorkerEvent:
    """A placed task ended on its GPUs."""

    kind: str
    """``task_done`` or ``reshard_done``."""
    task: Task
    """The task, with its group."""
    time_s: float
    """When it ended."""


class View(Protocol):
    """What a policy may read (the simulator and the server implement it)."""

    now: float
    """Current time in seconds."""
    gpus: int
    """Pool size; GPUs are 0..gpus-1."""
    events_pending: bool
    """More events follow at this instant; a policy may wait for the last one before placing."""
    costs: CostTable
    free: tuple[int, ...]
    """Idle GPUs, ascending."""

    def request(self, rid: str) -> Request: ...
    def holders(self, rid: str) -> tuple[int, ...]: ...
    def ready_since(self, task_id: str) -> float: ...
    def degrees(self, model: str) -> tuple[int, ...]: ...
    def remaining_s(self, rid: str, degree: int) -> float: ...
    def group_s(self, rid: str, group: Sequence[int]) -> float: ...
    def task_s(self, task: Task, group: Sequence[int]) -> float: ...
    def resident(self, gpu: int) -> tuple[str, ...]: ...
    def fits(self, model: str, gpu: int) -> bool: ...
    def load_s(self, model: str) -> float: ...
    def mem_gb(self, gpu: int) -> float: ...


@runtime_checkable
class Policy(Protocol):
    """Events in, assignments out."""

    name: str

    def on_request_submitted(self, request: Request, tasks: Sequence[Task], view: View) -> Sequence[Task]: ...
    def on_tasks_runnable(self, tasks: Sequence[Task], view: View) -> Sequence[Task]: ...
    def on_worker_event(self, event: WorkerEvent, view: View) -> Sequence[Task]: ...


class QueuePolicy:
    """Keeps the runnable tasks and places them once per instant with :meth:`schedule`."""

    name = "queue"

    def __init__(self):
        self.ready: dict[str, Task] = {}

    def on_request_submitted(self, request, tasks, view):
        return self._tick(view)

    def on_tasks_runnable(self, tasks, view):
        for t in tasks:
            self.ready[t.id] = t
        return self._tick(view)

    def on_worker_event(self, event, view):
        return self._tick(view)

    def _tick(self, view) -> list[Task]:
        if view.events_pending or not self.ready or not view.free:
            return []
        out = self.schedule(view)
        for t in out:
            del self.ready[t.id]
        if out:
            logger.debug("%s at %.3f: placed %d of %d runnable tasks", self.name, view.now, len(out),
                         len(out) + len(self.ready))
        return out

    def schedule(self, view: View) -> list[Task]:
        """Assignments for some of ``self.ready`` onto ``view.free``."""
        raise NotImplementedError


class StaticSP(QueuePolicy):
    """The pool cut into fixed groups of ``k``; a request runs to completion on one group, FCFS."""

    def __init__(self, k: int):
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"StaticSP: k must be a positive int, got {k!r}")
        self.k, self.name = k, f"static-{k}"
        self.pin: dict[str, int] = {}

    def groups(self, gpus: int) -> list[tuple[int, ...]]:
        if gpus % self.k:
            raise ValueError(f"static-{self.k}: {gpus} GPUs do not split into groups of {self.k}; use a k that "
                             f"divides {gpus}")
        return [tuple(range(i, i + self.k)) for i in range(0, gpus, self.k)]

    def schedule(self, view):
        groups, free, out = self.groups(view.gpus), set(view.free), []
        key = lambda t: (t.request not in self.pin, view.request(t.request).arrival_s, t.request)  # noqa: E731
        for t in sorted(self.ready.values(), key=key):
            gi = self.pin.get(t.request)
            if gi is None:  # pinned tasks come first, so from here on only free groups matter
                opts = [i for i, g in enumerate(groups) if free.issuperset(g)]
                if not opts:
                    break
                model = view.request(t.request).model
                gi = min(opts, key=lambda i: (not all(model in view.resident(g) for g in groups[i]), i))
                self.pin[t.request] = gi
            elif not free.issuperset(groups[gi]):
                continue
            out.append(t.on(groups[gi]))
            free.difference_update(groups[gi])
            if t.kind == VAE_DECODE:
                del self.pin[t.request]
        return out


class ElasticPolicy(QueuePolicy):
    """Orders ready tasks by :meth:`key`, gives each a degree (:meth:`degree`), forms groups on demand.

    Degrees are compared by :meth:`estimate_s`: the request's remaining time at that degree with its model
    resident (the table's times; where the model is and whether it fits is not looked at).
    """

    name = "elastic"
    widen = False
    """Hand spare GPUs to placed requests (in order) where the cost model says wider is faster."""

    def key(self, task: Task, view: View):
        raise NotImplementedError

    def degree(self, task: Task, budget: int, view: View) -> int | None:
        """SP degree for a DiT task, at most ``budget``; None = leave it waiting."""
        return fastest(task, budget, view, self.estimate_s)

    def estimate_s(self, task: Task, degree: int, view: View) -> float:
        return view.remaining_s(task.request, degree)

    def schedule(self, view):
        free = set(view.free)
        tasks = sorted(self.ready.values(), key=lambda t: self.key(t, view))
        plans, budget = [], len(free)
        for t in tasks:
            if budget <= 0:
                break
            holders = view.holders(t.request)
            if holders and free.isdisjoint(holders):
                continue  # its state sits on busy GPUs: wait for one of them
            d = self.degree(t, budget, view) if t.parallel else 1
            if d is not None:
                plans.append([t, d])
                budget -= d
        if self.widen:
            _widen(plans, budget, view, self.estimate_s)
        taken: dict[int, int] = {}
        for t in tasks:
            for g in view.holders(t.request):
                taken[g] = taken.get(g, 0) + 1
        out = []
        for t, d in plans:
            group = _pick(t, d, free, view, taken)
            if group is not None:
                free.difference_update(group)
                out.append(t.on(group))
        return out


def _remaining(task: Task, d: int, view: View) -> float:
    return view.remaining_s(task.request, d)


def fastest(task: Task, budget: int, view: View, est=_remaining) -> int | None:
    """The degree <= ``budget`` with the least estimated remaining time ``est(task, d, view)`` (smaller on a tie)."""
    model = view.request(task.request).model
    cands = [d for d in view.degrees(model) if d <= budget]
    return min(cands, key=lambda d: (est(task, d, view), d)) if cands else None


def best_fit(task: Task, budget: int, view: View, est=_remaining) -> int | None:
    """The smallest degree <= ``budget`` whose estimated finish meets the deadline, else the fastest."""
    req = view.request(task.request)
    cands = [d for d in view.degrees(req.model) if d <= budget]
    if not cands:
        return None
    if req.deadline_s is not None:
        for d in cands:
            if view.now + est(task, d, view) <= req.deadline_s:
                return d
    return fastest(task, budget, view, est)


def _widen(plans: list[list], budget: int, view: View, est=_remaining) -> None:
    """Give spare GPUs to the first plan (in order) whose next faster degree fits; repeat until none does."""
    while budget > 0:
        for p in plans:
            t, d = p
            if not t.parallel:
                continue
            cur = est(t, d, view)
            up = next((s for s in view.degrees(view.request(t.request).model)
                       if d < s <= d + budget and est(t, s, view) < cur), None)
            if up is not None:
                p[1], budget = up, budget - (up - d)
                break
        else:
            return


def _pick(task: Task, d: int, free: set[int], view: View, taken: dict[int, int]) -> tuple[int, ...] | None:
    """A group of ``d`` free GPUs (fewer, down the model's degrees, if ``d`` no longer fit); None if none can."""
    req = view.request(task.request)
    holders = view.holders(task.request)
    own = [g for g in holders if g in free]
    if holders and not own:
        return None
    rest = sorted((g for g in free if g not in holders), key=lambda g: (taken.get(g, 0), g))
    sizes = [d] + ([s for s in reversed(view.degrees(req.model)) if s < d] if task.parallel else [])
    for n in sizes:
        if n <= len(own) + len(rest):
            return tuple(own[:n] + rest[:max(0, n - len(own))])
    return None


class FCFS(ElasticPolicy):
    """Arrival order; each DiT task at the fastest degree that fits (``degree="fastest"``) or a fixed one."""

    name = "fcfs"

    def __init__(self, degree: int | str = "fastest"):
        super().__init__()
        self._degree = _check_degree(degree, self.name)

    def key(self, task, view):
        req = view.request(task.request)
        return (req.arrival_s, req.id)

    def degree(self, task, budget, view):
        if self._degree == "fastest":
            return fastest(task, budget, view, self.estimate_s)
        cands = [d for d in view.degrees(view.request(task.request).model) if d <= min(self._degree, budget)]
        return cands[-1] if cands else None


class SRTF(FCFS):
    """Shortest remaining single-GPU time first (re-decided at every chunk boundary); degrees as FCFS."""

    name = "srtf"

    def key(self, task, view):
        req = view.request(task.request)
        return (view.remaining_s(req.id, 1), req.arrival_s, req.id)


class EDFBestFit(ElasticPolicy):
    """Earliest deadline first; best-fit degree; spare GPUs to urgent requests where wider is faster."""

    name = "edf"
    widen = True

    def key(self, task, view):
        req = view.request(task.request)
        return (math.inf if req.deadline_s is None else req.deadline_s, req.arrival_s, req.id)

    def degree(self, task, budget, view):
        return best_fit(task, budget, view, self.estimate_s)


class MemoryAware(EDFBestFit):
    """EDF best-fit that knows memory: each degree is priced on the group it would get, load and streaming included.

    For a ready task (earliest deadline first) and each SP degree, the group is the request's free state holders,
    then free GPUs holding its model, then GPUs it fits on (largest memory first), then the rest (low ranks); the
    estimate is ``view.group_s`` (model load there + remaining time, streamed at the group's smallest memory when
    some GPU cannot hold the model). Best fit as EDF: the smallest group meeting the deadline, else the fastest;
    spare GPUs then widen placed groups (in order) where that is faster. A model that fits no free GPU still runs,
    streamed, when that is the best estimate: a pool of small GPUs serves it.

    ``triage`` (default on): a request that cannot meet its deadline any more, even resident at its fastest
    degree, goes after every request that still can (EDF among each). Plain EDF spends GPUs on such requests
    first, so under overload one late request makes the next ones late too; ``triage=False`` turns it off, to
    measure what it is worth on its own.
    """

    name = "memory-aware"

    def __init__(self, triage: bool = True):
        super().__init__()
        self.triage = bool(triage)
        if not self.triage:
            self.name = "memory-aware-notriage"
        self._keys: dict[str, tuple] = {}  # task id -> (latest start that can still meet the deadline, EDF key)

    def key(self, task, view):
        # the whole backlog is sorted every instant: each task is priced once, only the comparison with now is new
        k = self._keys.get(task.id)
        if k is None:
            req = view.request(task.request)
            best = min(view.remaining_s(req.id, d) for d in view.degrees(req.model))
            late = math.inf if req.deadline_s is None or not self.triage else req.deadline_s - best
            k = self._keys[task.id] = (late, super().key(task, view))
        return (view.now > k[0], k[1])

    def on_worker_event(self, event, view):
        self._keys.pop(event.task.id, None)
        return super().on_worker_event(event, view)

    def schedule(self, view):
        free = set(view.free)
        tasks = sorted(self.ready.values(), key=lambda t: self.key(t, view))
        taken: dict[int, int] = {}
        for t in tasks:
            for g in view.holders(t.request):
                taken[g] = taken.get(g, 0) + 1
        plans: list[list] = []  # [task, group, estimate]
        for t in tasks:
            if not free:
                break
            holders = view.holders(t.request)
            if holders and free.isdisjoint(holders):
                continue  # its state sits on busy GPUs: wait for one of them
            order = self._order(t, free, view, taken)
            req = view.request(t.request)
            sizes = [d for d in view.degrees(req.model) if d <= len(order)] if t.parallel else [1]
            if not sizes:
                continue
            cands = [(tuple(order[:d]), view.group_s(t.request, order[:d])) for d in sizes]
            pick = None
            if req.deadline_s is not None:
                pick = next((c for c in cands if view.now + c[1] <= req.deadline_s), None)
            pick = pick or min(cands, key=lambda c: (c[1], len(c[0])))
            plans.append([t, pick[0], pick[1]])
            free.difference_update(pick[0])
        for p in plans:  # widen in EDF order while spare GPUs make a group faster
            t = p[0]
            if not t.parallel or not free:
                continue
            model = view.request(t.request).model
            order = self._order(t, free, view, taken)  # holders left out of a narrowed group come back first
            for d in view.degrees(model):
                extra = [g for g in order if g in free]
                if len(p[1]) < d <= len(p[1]) + len(extra):
                    group = p[1] + tuple(extra[:d - len(p[1])])
                    est = view.group_s(t.request, group)
                    if est < p[2]:
                        free.difference_update(group)
                        p[1], p[2] = group, est
        return [t.on(group) for t, group, _ in plans]

    @staticmethod
    def _order(task: Task, free: set[int], view: View, taken: dict[int, int]) -> list[int]:
        """Free GPUs in the order a group for ``task`` takes them (see the class docstring)."""
        req = view.request(task.request)
        holders = view.holders(task.request)
        own = [g for g in holders if g in free]
        rest = sorted((g for g in free if g not in holders),
                      key=lambda g: (req.model not in view.resident(g), not view.fits(req.model, g),
                                     -view.mem_gb(g), taken.get(g, 0), g))
        return own + rest


class Preemptive(EDFBestFit):
    """Priority first (aged), then EDF best-fit; preemption and demotion happen at chunk boundaries.

    Effective priority = ``priority + wait / aging_s`` (one level per ``aging_s`` seconds a task waits). A task
    that has waited ``starve_s`` goes before every non-starving one, the oldest request first.
    """

    name = "preempt"

    def __init__(self, aging_s: float = 30.0, starve_s: float = 120.0):
        super().__init__()
        if not aging_s > 0 or not starve_s >= 0:
            raise ValueError(f"Preemptive: aging_s must be > 0 and starve_s >= 0 (math.inf turns either off), got "
                             f"{aging_s}, {starve_s}")
        self.aging_s, self.starve_s = float(aging_s), float(starve_s)

    def key(self, task, view):
        req = view.request(task.request)
        wait = view.now - view.ready_since(task.id)
        if wait >= self.starve_s:
            return (0, req.arrival_s, req.id)
        return (1, -(req.priority + wait / self.aging_s), *super().key(task, view))


def _check_degree(degree, who):
    if degree != "fastest" and (isinstance(degree, bool) or not isinstance(degree, int) or degree < 1):
        raise ValueError(f"{who}: degree must be 'fastest' or a positive int, got {degree!r}")
    return degree


BUILTIN = {"fcfs": FCFS, "srtf": SRTF, "edf": EDFBestFit, "edf-best-fit": EDFBestFit, "memory-aware": MemoryAware,
           "memory-aware-notriage": lambda **kw: MemoryAware(triage=False, **kw), "preempt": Preemptive}


def make_policy(spec, **kwargs) -> Policy:
    """A policy from a name (``static-4``, ``fcfs``, ``srtf``, ``edf``, ``memory-aware``, ``preempt``),
    ``module:factory``, or an object with the three hooks (returned as is)."""
    if not isinstance(spec, str):
        policy = spec
    elif spec.startswith("static-"):
        try:
            k = int(spec[len("static-"):])
        except ValueError:
            raise ValueError(f"unknown policy {spec!r}: static policies are static-<k>, e.g. static-4") from None
        policy = StaticSP(k, **kwargs)
    elif spec in BUILTIN:
        policy = BUILTIN[spec](**kwargs)
    elif ":" in spec:
        mod, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"policy {spec!r}: cannot load {attr!r} from module {mod!r} ({e})") from None
        policy = factory(**kwargs)
    else:
        raise ValueError(f"unknown policy {spec!r}; built in: static-<k>, {', '.join(BUILTIN)}; or a user's "
                         "'module:factory'")
    missing = [h for h in HOOKS if not callable(getattr(policy, h, None))]
    if missing:
        raise ValueError(f"policy {spec!r} lacks {missing}; a policy implements {HOOKS} (see Policy)")
    return policy


__all__ = ["Policy", "View", "WorkerEvent", "QueuePolicy", "ElasticPolicy", "StaticSP", "FCFS", "SRTF", "EDFBestFit",
           "MemoryAware", "Preemptive", "make_policy", "fastest", "best_fit", "BUILTIN", "HOOKS"]
