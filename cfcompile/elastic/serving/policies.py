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
                  deadline (else the fastest), spare GPUs to urgent requests only where wider is faster; as
                  GF-DiT's, a request that can no longer meet its deadline keeps its place in deadline order
    edf-triage    edf, but requests that can no longer meet their deadline go after those that still can, where
                  their remaining work is longer than the shortest slack of those (else they keep their EDF place)
    memory-aware  EDF best-fit over groups rather than degrees: each candidate group is priced with its model
                  load and, where a GPU cannot hold the model, the streamed step time (``view.group_s``); GPUs
                  the model fits on come first, then (as EDF) GPUs no waiting request's state sits on, then GPUs
                  holding the model; a pool of small GPUs serves a model that fits none of them by streaming;
                  requests that can no longer meet their deadline go
                  last (triage; ``memory-aware-notriage`` without it); ``wait`` (default ``"expected"``,
                  serving22): a request no free group brings in by its deadline waits for a wider group only
                  while one is predicted free (``view.free_at``) before its latest start there, else it starts
                  now on what is free (``wait=None``: always start now, as before serving22); serving25: only
                  with a margin (``wait_margin`` 1.0: wait and run priced at 2x) and never on a GPU past its
                  predicted end, where the simulator asks it again (``overrun="wake"``)
    preempt       priorities with aging on top of EDF best-fit; at each chunk boundary a lower request yields
                  GPUs (demoted to what is left, or paused); a task waiting ``starve_s`` goes first, oldest
                  request first, so the oldest request's task starts within starve_s + the longest task
    module:func   a user's factory, called with the keyword arguments given to make_policy

The ready queue of fcfs, srtf, edf, memory-aware and static-k stays sorted across instants (their keys do not
change while a task waits; see :class:`QueuePolicy`), so an instant costs the tasks it looks at, not the backlog.

Groups are formed on demand from free GPUs, preferring, in order: GPUs holding the request's state (no
reshard), GPUs no other waiting request's state sits on, low ranks. fcfs, srtf, edf and preempt price degrees with
the cost table's resident times, as a profiled table (GF-DiT's) does, and ignore which GPU holds which model: the
simulator still charges loads and streaming, so memory-aware's gain over edf is what knowing memory is worth.
"""

from __future__ import annotations

import abc
import bisect
import heapq
import importlib
import itertools
import logging
import math
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence, runtime_checkable

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
    def remaining_s(self, rid: str, degree: int, mem_gb: float | None = None) -> float: ...
    def group_s(self, rid: str, group: Sequence[int]) -> float: ...
    def task_s(self, task: Task, group: Sequence[int]) -> float: ...
    def resident(self, gpu: int) -> tuple[str, ...]: ...
    def free_at(self, gpu: int) -> float:
        """When ``gpu`` is predicted to be free: now if idle, else the running task's start plus its predicted
        time from the cost table (a server knows this too); math.inf if unknown."""
        ...
    def fits(self, model: str, gpu: int) -> bool: ...
    def load_s(self, model: str) -> float: ...
    def mem_gb(self, gpu: int) -> float: ...


@runtime_checkable
class Policy(Protocol):
    """Events in, assignments out.

    Optional attribute ``wake_on_overrun`` (default False): when True, the simulator also asks the policy
    (``on_tasks_runnable(())``) at the predicted end of every task that runs past it (``SimConfig.duration_error``),
    an instant at which nothing else may happen."""

    name: str

    def on_request_submitted(self, request: Request, tasks: Sequence[Task], view: View) -> Sequence[Task]: ...
    def on_tasks_runnable(self, tasks: Sequence[Task], view: View) -> Sequence[Task]: ...
    def on_worker_event(self, event: WorkerEvent, view: View) -> Sequence[Task]: ...


class QueuePolicy(abc.ABC):
    """Keeps the runnable tasks and places them once per instant with :meth:`schedule`.

    ``self.ready`` maps task id -> task. :meth:`ordered` gives them in :meth:`key` order: a policy whose key of a
    task does not change while the task waits (it depends on the task, its request and the request's progress,
    not on the time or on other tasks) sets ``static_key = True`` in the class that defines ``key``; the queue
    then stays sorted across instants (insertion by bisection) instead of being sorted at every event. Keys must
    then be distinct (the built-in ones end with the request id; a request has one runnable task at a time). A
    subclass that overrides ``key`` without declaring ``static_key`` there is sorted at every call, as before.
    """

    name = "queue"

    def __init__(self):
        self.ready: dict[str, Task] = {}
        self._static = _declares_static_key(type(self))
        self._queue: list[tuple] = []  # (key, task id), sorted; only with a static key
        self._qkey: dict[str, tuple] = {}

    def on_request_submitted(self, request, tasks, view):
        return self._tick(view)

    def on_tasks_runnable(self, tasks, view):
        for t in tasks:
            self.ready[t.id] = t
            self._added(t, view)
        return self._tick(view)

    def on_worker_event(self, event, view):
        return self._tick(view)

    def _tick(self, view) -> list[Task]:
        if view.events_pending or not self.ready or not view.free:
            return []
        out = self.schedule(view)
        for t in out:
            del self.ready[t.id]
            self._removed(t, view)
        if out:
            logger.debug("%s at %.3f: placed %d of %d runnable tasks", self.name, view.now, len(out),
                         len(out) + len(self.ready))
        return out

    def key(self, task: Task, view: View):
        """Order of the runnable tasks (smallest first)."""
        return (view.request(task.request).arrival_s, task.request, task.id)

    def _added(self, task: Task, view: View) -> None:
        """``task`` became runnable (it is in ``self.ready``)."""
        if self._static:
            k = self._qkey[task.id] = (self.key(task, view), task.id)
            bisect.insort(self._queue, k)

    def _removed(self, task: Task, view: View) -> None:
        """``task`` was placed (it left ``self.ready``)."""
        if self._static:
            self._unqueue(self._qkey.pop(task.id))

    def _unqueue(self, qk: tuple) -> None:
        del self._queue[bisect.bisect_left(self._queue, qk)]

    def ordered(self, view: View) -> Iterable[Task]:
        """The runnable tasks, smallest :meth:`key` first."""
        if self._static:
            ready = self.ready
            return (ready[tid] for _, tid in self._queue)
        return sorted(self.ready.values(), key=lambda t: self.key(t, view))

    @abc.abstractmethod
    def schedule(self, view: View) -> list[Task]:
        """Assignments for some of ``self.ready`` onto ``view.free``."""


def _declares_static_key(cls) -> bool:
    """Whether the class that defines ``cls.key`` also declares ``static_key = True``."""
    for k in cls.__mro__:
        if "key" in k.__dict__:
            return bool(k.__dict__.get("static_key", False))
    return False


class StaticSP(QueuePolicy):
    """The pool cut into fixed groups of ``k``; a request runs to completion on one group, FCFS."""

    def __init__(self, k: int):
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"StaticSP: k must be a positive int, got {k!r}")
        self.k, self.name = k, f"static-{k}"
        self.pin: dict[str, int] = {}

    static_key = True  # a waiting task's request is pinned from its first placement to its last: fixed while it waits

    def key(self, task, view):
        return (task.request not in self.pin, view.request(task.request).arrival_s, task.request)

    def groups(self, gpus: int) -> list[tuple[int, ...]]:
        if gpus % self.k:
            raise ValueError(f"static-{self.k}: {gpus} GPUs do not split into groups of {self.k}; use a k that "
                             f"divides {gpus}")
        return [tuple(range(i, i + self.k)) for i in range(0, gpus, self.k)]

    def schedule(self, view):
        groups, free, out = self.groups(view.gpus), set(view.free), []
        for t in self.ordered(view):
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

    def __init__(self):
        super().__init__()
        self._taken: dict[int, int] = {}  # GPU -> runnable tasks whose request's state sits on it
        self._held: dict[str, tuple[int, ...]] = {}

    @abc.abstractmethod
    def key(self, task: Task, view: View):
        """Order of the runnable tasks (smallest first)."""

    def degree(self, task: Task, budget: int, view: View) -> int | None:
        """SP degree for a DiT task, at most ``budget``; None = leave it waiting."""
        return fastest(task, budget, view, self.estimate_s)

    def estimate_s(self, task: Task, degree: int, view: View) -> float:
        return view.remaining_s(task.request, degree)

    # a request's state holders do not change while one of its tasks waits: count them as tasks come and go
    def _added(self, task, view):
        super()._added(task, view)
        held = self._held[task.id] = tuple(view.holders(task.request))
        for g in held:
            self._taken[g] = self._taken.get(g, 0) + 1

    def _removed(self, task, view):
        super()._removed(task, view)
        for g in self._held.pop(task.id):
            n = self._taken[g] - 1
            if n:
                self._taken[g] = n
            else:
                del self._taken[g]

    def schedule(self, view):
        free = set(view.free)
        plans, budget = [], len(free)
        for t in self.ordered(view):
            if budget <= 0:
                break
            holders = self._held[t.id]
            if holders and free.isdisjoint(holders):
                continue  # its state sits on busy GPUs: wait for one of them
            d = self.degree(t, budget, view) if t.parallel else 1
            if d is not None:
                plans.append([t, d])
                budget -= d
        if self.widen:
            _widen(plans, budget, view, self.estimate_s)
        return self._place(plans, free, view)

    def _place(self, plans, free: set[int], view: View) -> list[Task]:
        """Groups for settled ``(task, degree)`` plans, in order: each request's free state holders first, then
        the free GPUs :meth:`_rest_key` ranks first (fewer, down the degrees, where ``d`` no longer fits)."""
        taken = self._taken  # GPU -> runnable tasks whose state sits on it
        out = []
        for t, d in plans:
            group = _pick(t, d, free, view, taken, self._rest_key(t, view, taken))
            if group is not None:
                free.difference_update(group)
                out.append(t.on(group))
        return out

    def _rest_key(self, task: Task, view: View, taken: dict[int, int]):
        """Order of the free GPUs that do not hold ``task``'s state: fewest waiting tasks' state on it, low rank."""
        return lambda g: (taken.get(g, 0), g)


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


def _pick(task: Task, d: int, free: set[int], view: View, taken: dict[int, int],
          key=None) -> tuple[int, ...] | None:
    """A group of ``d`` free GPUs: the request's state holders, then the others by ``key`` (default: fewest
    waiting tasks' state on it, low rank); fewer, down the model's degrees, if ``d`` no longer fits; None if none
    can, or if the request's state sits only on GPUs no longer free."""
    req = view.request(task.request)
    holders = view.holders(task.request)
    own = [g for g in holders if g in free]
    if holders and not own:
        return None
    rest = sorted((g for g in free if g not in holders), key=key or (lambda g: (taken.get(g, 0), g)))
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

    static_key = True  # fixed while the task waits

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

    static_key = True  # fixed while the task waits

    def key(self, task, view):
        req = view.request(task.request)
        return (view.remaining_s(req.id, 1), req.arrival_s, req.id)


class EDFBestFit(ElasticPolicy):
    """Earliest deadline first; best-fit degree; spare GPUs to urgent requests where wider is faster.

    As GF-DiT's ``EdfBestFitSchedulerPolicy`` (``vllm_omni/diffusion/runtime_v2/policies/edf_best_fit.py``): strict
    EDF order; a request that no degree brings in by its deadline ("doomed" there) is still served in deadline
    order, at the degree predicted to finish soonest; nothing is dropped or put back. Under overload that is the
    EDF domino effect: the GPUs go to requests already late, and the ones behind them become late too.

    ``triage`` (default off here, on in :class:`MemoryAware`; ``edf-triage`` names it): a request that cannot meet
    its deadline any more, even resident at its fastest degree (now > deadline - that time), goes after every
    request that still can (EDF among each). It still runs, after the others: nothing starves while GPUs idle.
    A late task is put back only where its place can cost another request its deadline. The slack of a request
    that can still make it is, per degree the pool can form, its latest start there (:meth:`starts_s`, priced when
    its newest task became runnable) minus now; the smallest of those not yet negative, over every such request,
    waiting or running until its last task is placed, is the queue's slack (:meth:`slack_s`). Late tasks keep their
    EDF place, in EDF order, while their requests' remaining work (:meth:`hold_s`, the longest each can hold GPUs
    until it ends) adds up to no more than that slack: then no request they go before can be made late by them,
    and putting them last would only move work around (at load 0.8 on 64 GPUs that noise cost 2-3 requests of
    4,800 on some seeds). Under overload slacks are short, late requests have much left, and they go last.
    """

    name = "edf"
    widen = True

    def __init__(self, triage: bool = False):
        super().__init__()
        self.triage = bool(triage)
        if self.triage and not self._static:
            raise ValueError(f"{type(self).__name__}: triage needs the EDF key (static_key); {type(self).__name__}.key "
                             "overrides it")
        # With triage, two sorted queues, EDF order in each: ``_queue`` (requests that can still meet their
        # deadline) and ``_late``; a task moves to ``_late`` once now passes its latest start (a heap of those).
        self._late: list[tuple] = []
        self._is_late: set[str] = set()
        self._due: list[tuple] = []  # heap of (latest start, queue entry) of tasks in _queue
        self._hold: dict[str, float] = {}  # late task id -> hold_s
        self._slack: list[tuple] = []  # heap of (latest start at a degree, task id, request id)
        self._live: dict[str, str] = {}  # request that can still make it -> its newest runnable task

    static_key = True  # fixed while the task waits

    def key(self, task, view):
        req = view.request(task.request)
        return (math.inf if req.deadline_s is None else req.deadline_s, req.arrival_s, req.id)

    def degree(self, task, budget, view):
        return best_fit(task, budget, view, self.estimate_s)

    def latest_start(self, task: Task, view: View) -> float:
        """The latest time the request can go on and still meet its deadline (at its fastest degree, of those the
        pool can form; see :meth:`starts_s`)."""
        if view.request(task.request).deadline_s is None:
            return math.inf
        return max(self.starts_s(task, view))

    def starts_s(self, task: Task, view: View) -> list[float]:
        """Per SP degree the pool can form (at most its size), the latest start that still meets the deadline
        there (resident, as a profiled table prices it)."""
        req = view.request(task.request)
        ds = [d for d in view.degrees(req.model) if d <= view.gpus] or view.degrees(req.model)[:1]
        return [req.deadline_s - view.remaining_s(req.id, d) for d in ds]

    def hold_s(self, task: Task, view: View) -> float:
        """The longest the request of ``task`` can hold GPUs from now to its end: its remaining time at the slowest
        degree the pool can form (resident). A late request that keeps its place keeps it chunk after chunk, so
        what it can delay others by is all of its remaining work, not one task."""
        req = view.request(task.request)
        return max(view.remaining_s(req.id, d) for d in view.degrees(req.model) if d <= view.gpus)

    def _added(self, task, view):
        super()._added(task, view)
        if self.triage:
            late = self.latest_start(task, view)
            if late < math.inf:
                heapq.heappush(self._due, (late, self._qkey[task.id]))
                self._track(task, view)

    def _track(self, task: Task, view: View) -> None:
        """Count the request of ``task`` (runnable, can still make it) in the queue's slack until it is late or
        its last task is placed: waiting or running, its next tasks compete with late ones."""
        self._live[task.request] = task.id
        for start in self.starts_s(task, view):
            heapq.heappush(self._slack, (start, task.id, task.request))

    def _removed(self, task, view):
        super()._removed(task, view)
        if task.kind == VAE_DECODE and self._live.get(task.request) == task.id:
            del self._live[task.request]

    def slack_s(self, view: View) -> float:
        """The shortest slack of the requests that can still make it, waiting or running (see the class
        docstring); math.inf if none."""
        slack, live, now = self._slack, self._live, view.now
        while slack and (slack[0][0] < now or live.get(slack[0][2]) != slack[0][1]):
            heapq.heappop(slack)  # a degree it can no longer make it on; an older task of it; done or late
        return slack[0][0] - now if slack else math.inf

    def _unqueue(self, qk):
        if qk[1] in self._is_late:
            self._is_late.remove(qk[1])
            del self._hold[qk[1]]
            del self._late[bisect.bisect_left(self._late, qk)]
        else:
            super()._unqueue(qk)

    def ordered(self, view):
        if not self.triage:
            return super().ordered(view)
        now, due = view.now, self._due
        while due and due[0][0] < now:
            _, qk = heapq.heappop(due)
            if qk[1] in self._qkey:  # still waiting (placed tasks leave their heap entry behind)
                super()._unqueue(qk)
                bisect.insort(self._late, qk)
                self._is_late.add(qk[1])
                self._hold[qk[1]] = self.hold_s(self.ready[qk[1]], view)
                t = self.ready[qk[1]]
                if self._live.get(t.request) == t.id:
                    del self._live[t.request]
        ready, late = self.ready, self._late
        if not late:
            return (ready[tid] for _, tid in self._queue)
        left = self.slack_s(view)
        if left == math.inf:  # no request can still make it: every late task keeps its place (lazily, no copy)
            return (ready[tid] for _, tid in heapq.merge(self._queue, late))
        # the first late tasks (EDF order) whose remaining work fits the slack together keep their EDF place
        n, hold = 0, self._hold
        while n < len(late) and hold[late[n][1]] <= left:
            left -= hold[late[n][1]]
            n += 1
        ahead = heapq.merge(self._queue, late[:n]) if n else self._queue
        return (ready[tid] for _, tid in itertools.chain(ahead, itertools.islice(late, n, None)))


class MemoryAware(EDFBestFit):
    """EDF best-fit that knows memory: each degree is priced on the group it would get, load and streaming included.

    For a ready task (earliest deadline first) and each SP degree, the group is the request's free state holders,
    then the free GPUs its model fits on, then the rest; within each, GPUs no other waiting request's state sits on
    first (as EDF), then GPUs holding the model, larger memory, low ranks (:meth:`_rest_key`); the
    estimate is ``view.group_s`` (model load there + remaining time, streamed at the group's smallest memory when
    some GPU cannot hold the model). Best fit as EDF: the smallest group meeting the deadline, else the fastest;
    spare GPUs then widen groups one step at a time, the first (in order) that a faster degree fits, as EDF's
    ``_widen``. These groups only settle the degrees: the GPUs are then picked as EDF picks them (in order, each
    request's own state holders first, then the rest in the order above), so requests keep their state where EDF
    would (fewer reshards), and on a pool where memory does not matter memory-aware makes ``edf-triage``'s
    decisions exactly. A model that fits no free GPU still runs, streamed, when that is the best estimate: a pool of
    small GPUs serves it. On a pool where the model fits some GPUs and not others, a request that no free group
    brings in by its deadline but GPUs holding the model still would (it is not late) takes a group of those or
    waits for one, never a streamed group: there it would miss for certain and hold GPUs the requests that can
    use them need (8 x 80+24 GB Qwen-Image, load 0.6: S requests took the 24 GB GPUs, 18 s streamed for a 5.8 s
    deadline; 358 -> 444 of 452 met).

    ``triage`` (default on, see :class:`EDFBestFit`): a request that cannot meet its deadline any more, even
    resident at its fastest degree, goes after every request that still can (EDF among each). Plain EDF spends
    GPUs on such requests first, so under overload one late request makes the next ones late too;
    ``triage=False`` (``memory-aware-notriage``) turns it off, to measure what it is worth on its own. The test
    prices the best group the pool could ever give the request: resident where the model fits the pool's largest
    GPUs, else streamed (on a pool where the model fits no GPU, deadlines a streamed run cannot meet go last).
    Late tasks keep their EDF place where their remaining work fits the queue's slack (see :class:`EDFBestFit`),
    except on a pool where the model fits some GPUs and not others (:meth:`hold_s`).

    ``spare_big`` (default off, opt-in): on a mixed pool, a request whose deadline a group of GPUs that cannot
    hold its model still meets (streamed) goes there, leaving the GPUs that hold the model to requests that need
    them. Measured on Qwen-Image, 80+24 GB: -1.3 to +2.9 SLO points on 8 GPUs, -1.3 on 64 GPUs at load 1.0; so off.

    ``wait`` (default ``"expected"``, serving22): for DiT tasks of requests that are not late and that no free
    group brings in by their deadline, on pools where the model fits every GPU or none (a mixed pool keeps the rule
    above). ``"expected"``: wait only while a group wider than the free GPUs is predicted to be free no later than
    the request's latest start at that degree (deadline minus its remaining time there, plus a model load unless
    its state's GPUs hold the model; :meth:`_wider_expected`). "Predicted free" is ``view.free_at`` (the running
    task's start + its cost-table time; GPUs placed earlier at this instant after their task's predicted time),
    the earliest GPUs first, less those that waiting requests earlier in the order count on; the free GPUs a waiting
    request counts on stay idle at this instant (lower requests do not take them). Re-decided at every instant: once
    no wider group comes in time it starts now on what is free and widens at a later chunk boundary. Measured
    (RESULTS.md serving22): both models on 64 x H100 at load 1.2, 5 -> 0 of 16 seeds below edf (+55 -> +688 over
    edf); 64 x 24 GB both models at the serving20 bound at 1.0 and 8 below it at 1.2; no cell below edf.
    Under prediction error (``SimConfig.duration_error``, serving24/25) two knobs make the wait robust (defaults
    since serving25; ``wait_margin=0.0, overrun="now"`` is serving22's rule):
    ``wait_margin`` m (default 1.0): the wait and the request's run are priced (1 + m) times their predictions: it
    waits only if ``free + m (free - now) <= deadline - load - (1 + m) remaining``. ``overrun``: what a GPU running
    past its predicted end (``view.free_at`` = now) counts as: ``"now"`` (serving22) free now; ``"skip"`` not
    counted (when it frees is unknown); ``"wake"`` (default) as ``"skip"``, and the simulator also emits an event at
    the predicted end of every task that runs past it (``wake_on_overrun``), so the policy is asked again then and
    gives up a wait on that GPU at once, instead of idling the free GPUs it holds until some other event. Measured
    (RESULTS.md serving25, 16 seeds): Qwen-Image on 8 x H100 at loads 1.0 / 1.2, memory-aware - edf-triage was +170
    / +262 met at sigma 0 and -227 / -443 at sigma 0.2; now +259 / +491 and +157 / +215.
    ``None``: never wait (start now on the fastest free group; the default before serving22). serving21's blind
    variants, kept to reproduce its numbers: ``"all"``: wait rather than start on any free group; ``"chunk"``: wait
    only rather than start on a group where even this task there and the rest at the best degree the pool could
    give miss (each regressed some cell below edf).
    """

    name = "memory-aware"

    def __init__(self, triage: bool = True, spare_big: bool = False, wait: str | None = "expected",
                 wait_margin: float = 1.0, overrun: str = "wake"):
        super().__init__(triage=triage)
        self.spare_big = bool(spare_big)
        if wait not in (None, "all", "chunk", "expected"):
            raise ValueError(f"memory-aware: wait must be None, 'all', 'chunk' or 'expected', not {wait!r}")
        self.wait = wait
        if (isinstance(wait_margin, bool) or not isinstance(wait_margin, (int, float))
                or not 0 <= wait_margin < math.inf):
            raise ValueError(f"memory-aware: wait_margin must be a finite number >= 0, not {wait_margin!r}")
        self.wait_margin = float(wait_margin)
        if overrun not in ("now", "skip", "wake"):
            raise ValueError(f"memory-aware: overrun must be 'now', 'skip' or 'wake', not {overrun!r}")
        self.overrun = overrun
        # the simulator emits an event at the predicted end of a task that runs past it (see View / simulator)
        self.wake_on_overrun = overrun == "wake"
        if not self.triage:
            self.name = "memory-aware-notriage"
        self._best: dict[str, list[tuple[int, float | None]]] = {}  # model -> per degree: (d, None or streamed GB)
        self._mixed_pool: dict[str, bool] = {}
        self._load: dict[str, float] = {}  # model -> view.load_s

    def _best_groups(self, model: str, view: View) -> list[tuple[int, float | None]]:
        """Per SP degree the pool can form, the best group it could ever give ``model``: the ``d`` largest GPUs,
        resident (None) if the model fits each alone, else streamed at the smallest one's memory (GB)."""
        best = self._best.get(model)
        if best is None:
            by_mem = sorted(range(view.gpus), key=lambda g: (-view.mem_gb(g), g))
            best = self._best[model] = [
                (d, None if all(view.fits(model, g) for g in by_mem[:d]) else view.mem_gb(by_mem[d - 1]))
                for d in view.degrees(model) if d <= view.gpus]
        return best

    def starts_s(self, task, view):
        """As :meth:`EDFBestFit.starts_s`, on the best group per degree this pool could give the request: resident
        where the model fits the pool's largest GPUs, else streamed. So :meth:`latest_start` prices what the pool
        can do: on a pool where the model fits no GPU, a request whose streamed time exceeds its deadline window is
        triaged at once instead of taking GPUs from requests that still can make it."""
        req = view.request(task.request)
        best = self._best_groups(req.model, view)
        if not best:
            return super().starts_s(task, view)
        return [req.deadline_s - _remaining_s(view, req, d, mem) for d, mem in best]

    def hold_s(self, task, view):
        """As :meth:`EDFBestFit.hold_s`, on the best groups this pool could give the request (see
        :meth:`starts_s`), plus a model load unless every GPU holding the request's state holds the model.
        Unbounded where the model fits some GPUs of the pool and not others: there a late request placed first can
        push a request that still can make it onto GPUs that stream the model, slower by more than any wait, so it
        goes last."""
        req = view.request(task.request)
        best = self._best_groups(req.model, view)
        if not best:
            return super().hold_s(task, view)
        if self._mixed(req.model, view):
            return math.inf
        holders = view.holders(req.id)
        load = self._load_unless_held(req, holders, view)
        return load + max(_remaining_s(view, req, d, mem) for d, mem in best)

    def schedule(self, view):
        free = set(view.free)
        tasks = self.ordered(view)
        taken = self._taken
        plans: list[list] = []  # [task, group, estimate, spare_big pick]
        free0 = frozenset(view.free)
        expected = None  # wait="expected": when the GPUs are predicted to free, built on first use
        for t in tasks:
            if not free:
                break
            holders = self._held[t.id]
            if holders and free0.isdisjoint(holders):
                continue  # its state sits on busy GPUs: wait for one of them
            order = self._order(t, free, view, taken)
            # its state holders are free but priced into earlier groups: as EDF, it still takes a share of the
            # GPUs (its placement then finds no holder and it waits), but the GPUs least wanted, not the best
            lost = bool(holders) and free.isdisjoint(holders)
            if lost:
                order.reverse()
            req = view.request(t.request)
            sizes = [d for d in view.degrees(req.model) if d <= len(order)] if t.parallel else [1]
            if not sizes:
                continue
            pick = None
            if req.deadline_s is not None and self.spare_big:
                pick = self._spare_pick(t, req, order, view)
            cands = [(tuple(order[:d]), view.group_s(t.request, order[:d])) for d in sizes] if pick is None else ()
            if req.deadline_s is not None and pick is None:
                pick = next((c for c in cands if view.now + c[1] <= req.deadline_s), None)
                if pick is None and self._mixed(req.model, view) and not self._late_now(t, view):
                    # no free group meets the deadline, but GPUs that hold the model still would: never a streamed
                    # group (certain to miss, and it holds GPUs others can use); a resident one, or wait
                    cands = [c for c in cands if all(view.fits(req.model, g) for g in c[0])]
                    if not cands:
                        continue
                elif pick is None and self.wait and t.parallel and not self._late_now(t, view):
                    if self.wait == "expected":
                        if expected is None:
                            expected = _Expected(view, self.overrun != "now")
                        group = self._wider_expected(t, req, len(order), free, expected, view)
                        if group is not None:
                            expected.reserve(group, free)
                            continue
                    else:
                        cands = [c for c in cands if not self._certain_miss(t, req, c, view)]
                        if not cands:
                            continue
            pick = pick or min(cands, key=lambda c: (c[1], len(c[0])))
            plans.append([t, pick[0], pick[1], pick is not None and not cands, lost])
            free.difference_update(pick[0])
            if expected is not None:
                expected.planned(pick[0], view.now + view.task_s(t, pick[0]))
        # widen as EDF's _widen: one step at a time, to the first group (in order) whose next faster degree the
        # spare GPUs allow, then again from the first (a group that cannot widen now cannot later: free shrinks)
        stuck = [not p[0].parallel for p in plans]
        while free:
            for i, p in enumerate(plans):
                if stuck[i]:
                    continue
                t, n = p[0], len(p[1])
                extra = self._order(t, free, view, taken)  # holders left out of a narrowed group come back first
                if p[4]:
                    extra.reverse()
                up = None
                for d in view.degrees(view.request(t.request).model):
                    if n < d <= n + len(extra):
                        group = p[1] + tuple(extra[:d - n])
                        est = view.group_s(t.request, group)
                        if est < p[2]:
                            up = group, est
                            break
                if up is None:
                    stuck[i] = True
                    continue
                free.difference_update(up[0])
                p[1], p[2] = up
                break
            else:
                break
        # the degrees are settled; now the groups, as EDF forms them: in order, each request's own state holders
        # first (a group priced above may have taken GPUs that hold a later request's state: fewer reshards)
        # (a spare_big group stays as picked: its GPUs were chosen for not holding the model)
        spare = [p for p in plans if p[3]]
        free = set(view.free).difference(*(p[1] for p in spare))
        if expected is not None:
            free.difference_update(expected.held)  # free GPUs a waiting request's wider group counts on stay idle
        out = self._place([(p[0], len(p[1])) for p in plans if not p[3]], free, view)
        return out + [p[0].on(p[1]) for p in spare]

    def _mixed(self, model: str, view: View) -> bool:
        """Whether the model fits some GPUs of the pool and not others."""
        mixed = self._mixed_pool.get(model)
        if mixed is None:
            mixed = self._mixed_pool[model] = len({view.fits(model, g) for g in range(view.gpus)}) > 1
        return mixed

    def _certain_miss(self, task: Task, req, cand, view: View) -> bool:
        """Whether starting ``task`` on the candidate group (GPUs, estimate) misses the deadline for certain:
        ``wait="all"``: its whole remaining work at the group's degree misses (the candidate's estimate; the caller
        only asks when every candidate does); ``wait="chunk"``: even this task on the group followed by the rest
        at the best degree the pool could give misses."""
        if self.wait == "all":
            return True
        m = view.costs.model(req.model)
        rest = min(view.remaining_s(req.id, d) - m.task_ms(req, task, d) / 1e3 if mem is None else
                   view.remaining_s(req.id, d, mem) - m.task_ms(req, task, d, True, mem) / 1e3
                   for d, mem in self._best_groups(req.model, view))
        return view.now + view.task_s(task, cand[0]) + rest > req.deadline_s

    def _wider_expected(self, task: Task, req, n_free: int, free: set[int], expected: "_Expected",
                        view: View) -> tuple[int, ...] | None:
        """``wait="expected"``: the GPUs of a group wider than the ``n_free`` free ones that is predicted to be free
        (``view.free_at``; GPUs placed at this instant free after their task's predicted time; GPUs another waiting
        request counts on are not counted) no later than the request's latest start at that degree (its deadline
        minus its remaining time there, priced as :meth:`starts_s` does, plus a model load unless every GPU holding
        its state holds the model); the narrowest such degree. None: no wider group comes in time, start now."""
        best = self._best_groups(req.model, view)
        avail = expected.avail(free, view.now)
        if not avail:
            return None
        holders = self._held[task.id]
        load = self._load_unless_held(req, holders, view)
        for d, mem in best:
            if d <= n_free or d > len(avail):
                continue
            rest = _remaining_s(view, req, d, mem)
            m = self.wait_margin  # the wait and the run priced (1 + m) times their predictions
            if avail[d - 1][0] + m * (avail[d - 1][0] - view.now) <= req.deadline_s - load - rest * (1 + m):
                return tuple(g for _, g in avail[:d])
        return None

    def _load_unless_held(self, req, holders, view: View) -> float:
        """A model load, unless every GPU holding the request's state holds its model (cached per model)."""
        if holders and all(req.model in view.resident(g) for g in holders):
            return 0.0
        load = self._load.get(req.model)
        if load is None:
            load = self._load[req.model] = view.load_s(req.model)
        return load

    def _late_now(self, task: Task, view: View) -> bool:
        """Whether the request can no longer meet its deadline on any group the pool could give it."""
        return task.id in self._is_late if self.triage else view.now > self.latest_start(task, view)

    def _rest_key(self, task, view, taken):
        """GPUs the model fits on first (elsewhere it streams); among those, as EDF, GPUs no other waiting request's
        state sits on (``taken``: taking one makes that request wait for the whole task placed there, at least one
        chunk, where a model load costs about a second once); only then, in place of EDF's rank order, GPUs that
        hold the model, larger memory, low rank."""
        model = view.request(task.request).model
        return lambda g: (not view.fits(model, g), taken.get(g, 0), model not in view.resident(g), -view.mem_gb(g), g)

    def _spare_pick(self, task: Task, req, order: list[int], view: View):
        """On a mixed pool, a group of free GPUs that cannot hold the model (streamed) that still meets the
        deadline, smallest first: the GPUs that can hold it stay for requests that need them. None when the free
        GPUs are all of one kind, when the request's state sits only on GPUs that hold the model, or when no such
        group meets the deadline."""
        small = [g for g in order if not view.fits(req.model, g)]
        if not small or len(small) == len(order):
            return None
        holders = self._held[task.id]
        if holders and small[0] not in holders:
            return None  # its state would have to leave a GPU that holds the model, through a sender we do not book
        sizes = [d for d in view.degrees(req.model) if d <= len(small)] if task.parallel else [1]
        for d in sizes:
            est = view.group_s(task.request, small[:d])
            if view.now + est <= req.deadline_s:
                return (tuple(small[:d]), est)
        return None

    def _order(self, task: Task, free: set[int], view: View, taken: dict[int, int]) -> list[int]:
        """Free GPUs in the order a group for ``task`` takes them (see the class docstring)."""
        holders = view.holders(task.request)
        own = [g for g in holders if g in free]
        return own + sorted((g for g in free if g not in holders), key=self._rest_key(task, view, taken))


def _remaining_s(view: View, req, d: int, mem: float | None) -> float:
    """The request's remaining time at degree ``d``: resident (``mem`` None) or streamed at ``mem`` GB."""
    return view.remaining_s(req.id, d) if mem is None else view.remaining_s(req.id, d, mem)


class _Expected:
    """For one :meth:`MemoryAware.schedule` call with ``wait="expected"``: when each GPU is predicted to be free
    (idle ones now, busy ones at ``view.free_at``, ones placed at this instant after their task's predicted time),
    less the GPUs waiting requests (earlier in the order) count on."""

    def __init__(self, view: View, skip_overrun: bool = False):
        free, now = set(view.free), view.now
        self.busy = {g: view.free_at(g) for g in range(view.gpus) if g not in free}
        if skip_overrun:  # a busy GPU past its predicted end (free_at = now): when it frees is unknown, not counted
            self.busy = {g: t for g, t in self.busy.items() if t > now}
        self.held: set[int] = set()  # free GPUs a waiting request counts on (kept idle at this instant)
        self.reserved: set[int] = set()

    def planned(self, group, until: float) -> None:
        for g in group:
            self.busy[g] = until

    def avail(self, free: set[int], now: float) -> list[tuple[float, int]]:
        out = [(now, g) for g in sorted(free) if g not in self.reserved]
        out += sorted((t, g) for g, t in self.busy.items() if g not in self.reserved and g not in free)
        return out

    def reserve(self, group, free: set[int]) -> None:
        self.reserved.update(group)
        mine = free.intersection(group)
        self.held.update(mine)
        free.difference_update(mine)


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
        self._parts: dict[str, tuple] = {}  # task id -> what its key needs besides the time

    def key(self, task, view):
        req = view.request(task.request)
        wait = view.now - view.ready_since(task.id)
        if wait >= self.starve_s:
            return (0, req.arrival_s, req.id)
        return (1, -(req.priority + wait / self.aging_s), *super().key(task, view))

    # The key changes with the time, so the queue is sorted at every call; the parts that do not are kept.
    def _added(self, task, view):
        super()._added(task, view)
        req = view.request(task.request)
        self._parts[task.id] = (req.arrival_s, req.id, req.priority, view.ready_since(task.id),
                                EDFBestFit.key(self, task, view))

    def _removed(self, task, view):
        super()._removed(task, view)
        del self._parts[task.id]

    def ordered(self, view):
        if type(self).key is not Preemptive.key:
            return super().ordered(view)
        now, starve_s, aging_s, parts = view.now, self.starve_s, self.aging_s, self._parts

        def key(t):  # = self.key(t, view), the same arithmetic
            arrival, rid, priority, since, edf = parts[t.id]
            wait = now - since
            if wait >= starve_s:
                return (0, arrival, rid)
            return (1, -(priority + wait / aging_s), *edf)

        return sorted(self.ready.values(), key=key)


def _check_degree(degree, who):
    if degree != "fastest" and (isinstance(degree, bool) or not isinstance(degree, int) or degree < 1):
        raise ValueError(f"{who}: degree must be 'fastest' or a positive int, got {degree!r}")
    return degree


BUILTIN = {"fcfs": FCFS, "srtf": SRTF, "edf": EDFBestFit, "edf-best-fit": EDFBestFit,
           "edf-triage": lambda **kw: _named(EDFBestFit(triage=True, **kw), "edf-triage"), "memory-aware": MemoryAware,
           "memory-aware-notriage": lambda **kw: MemoryAware(triage=False, **kw), "preempt": Preemptive}


def _named(policy, name):
    policy.name = name
    return policy


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
