"""Benchmarks of the webhook against the floor of its own stack (issue 5); see RESULTS.md."""
