"""Prefect tasks: thin wrappers that add caching, tags, retries and names around the engine."""
