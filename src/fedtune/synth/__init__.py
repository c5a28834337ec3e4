"""Text generation for data synthesis, defenses and judges: one interface, backends by name."""

from fedtune.synth.generation import GENERATORS, TextGenerator, build_generator

__all__ = ["GENERATORS", "TextGenerator", "build_generator"]
