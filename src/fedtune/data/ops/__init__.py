"""Data-Juicer-style processing ops: each takes a client's records and returns which to keep."""
