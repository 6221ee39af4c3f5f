"""Graph passes of the chunkflow backend; see README.md in this folder for the invariants they keep."""
