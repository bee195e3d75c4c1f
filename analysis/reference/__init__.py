"""Reference data and classification: Microsoft 365 endpoints, gateway fingerprints, reply parsing, causes.

The data files (rules, fingerprints, endpoint snapshots) live in ``analysis/reference/data/``, each entry with
its public source.
"""
