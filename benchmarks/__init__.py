"""Benchmarks: each prints its figure, a baseline from the same run, the ratio, and a last line of JSON."""
