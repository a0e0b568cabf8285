"""The cache's decisions: request keys, the semantic tier, the guard."""
