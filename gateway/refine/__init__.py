"""Offline refinement of in-context examples (`gateway refine`)."""
