"""The sample story: a generator of realistic traces in every export format (for the demo and the tests)."""

from analysis.sample.generator import generate_story, write_big

__all__ = ["generate_story", "write_big"]
