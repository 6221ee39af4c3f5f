"""The first-order cost model: device profiles, node cost estimates and the predicted two-stream timeline.

Owns device profiles (`profiles`, measured by `probe`), per-node cost estimates of a graph (`graph_costs`), the
two-stream simulation of a call (`model`, with the `Span`s of its timeline) and the interconnect (`topology`).

May import: config, pinned. Nothing of plans, the runtime or the compiler: the planner calls it, not the reverse.
"""

from .graph_costs import GraphCosts, estimate_costs  # noqa: F401
from .model import GroupPrediction, Prediction, StreamedGroup, simulate  # noqa: F401
from .profiles import PROFILES, DeviceProfile, profile_for, resolve_profile  # noqa: F401
