"""The first-order cost model: device profiles, node cost estimates and the predicted two-stream timeline."""

from .profiles import PROFILES, DeviceProfile, profile_for  # noqa: F401
from .timeline import GroupPrediction, Prediction, predict  # noqa: F401
