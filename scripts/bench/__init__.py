"""Per-runner workload scripts for scripts/benchmark.py (one small script per way of launching)."""
