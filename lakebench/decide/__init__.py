"""Turning measured figures into an architecture choice."""
