"""`gateway replay`: what the cache would save on a workload, and how often it would be wrong."""
