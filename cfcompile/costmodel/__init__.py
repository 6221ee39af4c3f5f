"""The first-order cost model: device profiles, node cost estimates and the predicted two-stream timeline."""

from .graph_costs import GraphCosts, estimate_costs  # noqa: F401
from .model import GroupPrediction, Prediction, StreamedGroup, simulate  # noqa: F401
from .profiles import PROFILES, DeviceProfile, profile_for, resolve_profile  # noqa: F401
