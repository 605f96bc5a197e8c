"""The metadata model, its JSON Schema, its checks, diffs and versioned store."""
