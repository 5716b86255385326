"""Replay evaluation of policies on a protocol: tables, plots, run records, speed benchmarks."""
