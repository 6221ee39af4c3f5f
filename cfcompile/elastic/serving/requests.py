"""Requests and their task DAGs: what one image or video request turns into.

A request compiles to a chain of trajectory tasks (``chunk_steps`` denoising steps per chunk)::

    text_encode -> prepare -> denoise[0:k] -> denoise[k:2k] -> ... -> denoise[n-k:n] -> vae_decode
      1 GPU        group       group            group                   group              1 GPU

A policy places each task on a *group*, an ordered tuple of global GPU ranks (SP degree = its length), and may
pick a different group at every chunk boundary. A request's state (latents and text embeddings) is replicated on
the GPUs of the group that ran its last task (SP outputs are gathered), so placing the next task on GPUs that do
not hold it needs a ``reshard`` task first: it runs over source ∪ destination (one holder sends, the new GPUs
receive) and costs ``latency + state bytes x receivers / link bandwidth``. The simulator inserts it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

logger = logging.getLogger(__name__)

TEXT_ENCODE, PREPARE, DENOISE, VAE_DECODE, RESHARD = "text_encode", "prepare", "denoise", "vae_decode", "reshard"
STAGES = (TEXT_ENCODE, PREPARE, DENOISE, VAE_DECODE)
"""Stages a request compiles to, in order; each has a row in the cost table."""
PARALLEL = frozenset({PREPARE, DENOISE})
"""Stages that run sequence parallel over their whole group; the others use one GPU's worth of time."""

_JSON_KEYS = {"id": "id", "model": "model", "height": "height", "width": "width", "frames": "frames",
              "steps": "steps", "cfg": "cfg", "class": "klass", "priority": "priority", "arrival_s": "arrival_s",
              "deadline_s": "deadline_s", "slo_scale": "slo_scale"}


@dataclass(frozen=True)
class Request:
    """One generation request; validated on construction. JSON form: see :meth:`to_json`."""

    id: str
    """Unique id; task ids start with it."""
    model: str
    """Model name, a key of the cost table (``qwen-image``, ``wan``)."""
    height: int
    """Output height in pixels."""
    width: int
    """Output width in pixels."""
    frames: int = 1
    """Output frames (1 for an image)."""
    steps: int = 50
    """Denoising steps."""
    cfg: bool = False
    """True classifier-free guidance: two transformer passes per step (the model's ``cfg_factor``)."""
    klass: str = "default"
    """Request class for reporting and priorities (``S``/``M``/``L``); ``"class"`` in JSON."""
    priority: int = 0
    """Larger is more important; read by the preemptive policy."""
    arrival_s: float = 0.0
    """Arrival time in seconds from the start of the trace."""
    deadline_s: float | None = None
    """Absolute deadline in seconds; None = derive from ``slo_scale`` (or no deadline when that is None too)."""
    slo_scale: float | None = None
    """Deadline = arrival + slo_scale x the request's single-GPU time, resolved against a cost table."""

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"Request: id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"Request {self.id}: model must be a non-empty string, got {self.model!r}")
        for name in ("height", "width", "frames", "steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Request {self.id}: {name} must be a positive int, got {v!r}")
        if not isinstance(self.cfg, bool):
            raise ValueError(f"Request {self.id}: cfg must be true or false, got {self.cfg!r}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValueError(f"Request {self.id}: priority must be an int, got {self.priority!r}")
        for name in ("arrival_s", "deadline_s", "slo_scale"):
            v = getattr(self, name)
            if v is None and name != "arrival_s":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"Request {self.id}: {name} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.deadline_s is not None and self.deadline_s < self.arrival_s:
            raise ValueError(f"Request {self.id}: deadline_s {self.deadline_s} is before arrival_s {self.arrival_s}")
        if self.slo_scale is not None and self.slo_scale <= 0:
            raise ValueError(f"Request {self.id}: slo_scale must be > 0, got {self.slo_scale}")

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines form; ``deadline_s`` / ``slo_scale`` only when set."""
        out = {key: getattr(self, attr) for key, attr in _JSON_KEYS.items()}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, data: Any) -> "Request":
        """Parse the JSON-lines form; ValueError says which key is missing, unknown or wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_JSON_KEYS))
        if unknown:
            raise ValueError(f"unknown keys {unknown}; allowed: {sorted(_JSON_KEYS)}")
        missing = [k for k in ("id", "arrival_s", "model", "height", "width") if k not in data]
        if missing:
            raise ValueError(f"missing keys {missing}")
        return cls(**{_JSON_KEYS[k]: v for k, v in data.items()})


@dataclass(frozen=True)
class Task:
    """One node of a request's DAG; a policy's assignment is the task with ``group`` set (:meth:`on`)."""

    id: str
    """``<request>/<kind>`` plus the step range for a chunk (``r1/denoise[5:10]``)."""
    request: str
    """Id of the request it belongs to."""
    kind: str
    """One of ``STAGES`` or ``reshard``."""
    index: int
    """Position in the request's chain (reshards share the index of the task they precede)."""
    deps: tuple[str, ...] = ()
    """Ids of the tasks whose outputs it reads."""
    steps: tuple[int, int] | None = None
    """Denoising chunk: steps ``[start, end)``."""
    group: tuple[int, ...] | None = None
    """GPUs it runs on (ordered; position = SP rank); None until placed."""
    src: tuple[int, ...] | None = None
    """Reshard: the GPUs that held the state before it."""

    @property
    def parallel(self) -> bool:
        """Whether the task runs sequence parallel over its group (prepare, denoise)."""
        return self.kind in PARALLEL

    @property
    def n_steps(self) -> int:
        return 0 if self.steps is None else self.steps[1] - self.steps[0]

    def on(self, group) -> "Task":
        """This task assigned to ``group`` (what a policy returns)."""
        return replace(self, group=tuple(group))


def build_tasks(request: Request, chunk_steps: int = 5) -> list[Task]:
    """Compile ``request`` into its chain of tasks, ``chunk_steps`` denoising steps per chunk (last may be shorter)."""
    if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, int) or chunk_steps < 1:
        raise ValueError(f"build_tasks: chunk_steps must be a positive int, got {chunk_steps!r}")
    rid = request.id
    chain = [Task(f"{rid}/{TEXT_ENCODE}", rid, TEXT_ENCODE, 0), Task(f"{rid}/{PREPARE}", rid, PREPARE, 1)]
    for start in range(0, request.steps, chunk_steps):
        end = min(start + chunk_steps, request.steps)
        chain.append(Task(f"{rid}/{DENOISE}[{start}:{end}]", rid, DENOISE, len(chain), steps=(start, end)))
    chain.append(Task(f"{rid}/{VAE_DECODE}", rid, VAE_DECODE, len(chain)))
    return [t if i == 0 else replace(t, deps=(chain[i - 1].id,)) for i, t in enumerate(chain)]


def reshard_task(before: Task, n: int, src: tuple[int, ...], group: tuple[int, ...]) -> Task:
    """The ``n``-th reshard of a request: moves its state from ``src`` so that ``before`` can run; on ``group``."""
    return Task(f"{before.request}/{RESHARD}{n}", before.request, RESHARD, before.index, deps=before.deps,
                group=tuple(group), src=tuple(src))


__all__ = ["Request", "Task", "build_tasks", "reshard_task", "STAGES", "PARALLEL", "TEXT_ENCODE", "PREPARE",
           "DENOISE", "VAE_DECODE", "RESHARD"]
