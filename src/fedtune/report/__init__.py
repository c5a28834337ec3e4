"""The HTML report of a run: plots per round (matplotlib PNGs embedded) and tables."""
