"""Benchmark-only models: one order-shaped table per audit recorder (see audit_cost.py)."""
