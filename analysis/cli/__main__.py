"""``python -m analysis.cli``: the ``exo-deferrals`` command where its script is not on PATH (e.g. Windows)."""

from analysis.cli import main

raise SystemExit(main())
