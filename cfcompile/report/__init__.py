"""Dumps, schedule tables, timelines and plots."""
