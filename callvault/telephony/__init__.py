"""Calls without numbers: providers, call tokens, inbound caller lookup, recordings."""
