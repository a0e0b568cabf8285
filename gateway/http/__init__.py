"""The OpenAI routes: reading bodies, chat completions, misses, passthrough, SSE."""
