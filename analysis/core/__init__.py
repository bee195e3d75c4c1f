"""Core: the canonical schema, the kit's error types, whole-column helpers and the shared definitions.

The bottom layer: imports nothing else of the kit.
"""
