"""The sample story: a generator of realistic traces in every export format (for the demo and the tests), and its
numbers counted on the truth (:mod:`analysis.sample.truth`, written into data/sample/README.md)."""

from analysis.sample.generator import generate_story, write_big
from analysis.sample.truth import story_facts

__all__ = ["generate_story", "story_facts", "write_big"]
