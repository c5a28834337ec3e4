"""Text generation and data synthesis: one generation interface with backends by name, and the
synthesis methods that turn or extend a client's data with it (FedIT-U2S, FedGC)."""

from fedtune.synth import fedgc, knowledgesg, matrix, matrix_gen, u2s  # noqa: F401  (registers the methods)
from fedtune.synth.generation import GENERATORS, TextGenerator, build_generator
from fedtune.synth.registry import SYNTHESIZERS

__all__ = ["GENERATORS", "SYNTHESIZERS", "TextGenerator", "build_generator"]
