"""Benchmarks (not part of the default test suite); results in benchmarks/RESULTS.md."""
