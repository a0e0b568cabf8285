"""The in-memory HNSW index, its lock, the one similarity function, sync with the store."""
