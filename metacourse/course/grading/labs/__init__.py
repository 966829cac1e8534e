"""Probes and judges, one module per lab (named after its solution notebook)."""
