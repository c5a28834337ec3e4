"""Evaluation: exact match and loss on held-out records."""
