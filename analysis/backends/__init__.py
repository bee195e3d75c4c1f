"""Backends: running the kit's per-partition steps on Dask (optional: ``pip install "exo-deferrals[dask]"``)."""
