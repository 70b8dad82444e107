"""Telephony: providers per project, calls, one-time call tokens, recordings."""
