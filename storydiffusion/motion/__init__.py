"""Animated transitions between panels (placeholder docstring, completed below)."""
