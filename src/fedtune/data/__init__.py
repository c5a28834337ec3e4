"""Data: record schemas, the built-in suite, sources/formats, partitioning, processing, tokenization."""
