"""Desired versus observed state turned into actions, and the status computed from what was observed."""
