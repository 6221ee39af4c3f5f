"""The plan IR, the weight layout and the cost-model search."""
