"""Benchmarks of the webhook against the floor of its own stack; see RESULTS.md."""
