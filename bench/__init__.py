"""Benchmarks and the load generator; run from the repository root (`python -m bench.load`)."""
