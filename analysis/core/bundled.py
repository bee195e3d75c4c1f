"""Where the bundled notebooks and sample trace are: inside the installed package, or in the source checkout.

A wheel carries copies of the checkout's ``notebooks/`` and ``data/sample/`` as ``analysis/kit/notebooks/`` and
``analysis/kit/data/sample/`` (copied by ``setup.py`` at build time), in the same relative layout, so the
notebooks' default ``paths = "../data/sample/"`` works in both. An editable install or a checkout has no
``analysis/kit/``: the checkout's folders are used.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["KIT", "REPORT_NOTEBOOK_NAME", "kit_root", "notebooks_dir", "report_notebook", "sample_dir"]

KIT = "kit"  # the folder inside the package that a wheel's build fills (setup.py)
REPORT_NOTEBOOK_NAME = "04_share_report.ipynb"
_PACKAGE = Path(__file__).resolve().parent.parent  # analysis/


def kit_root() -> Path:
    """The folder holding ``notebooks/`` and ``data/sample/``: ``analysis/kit`` when installed from a wheel, else
    the source checkout (the folder above the package)."""
    installed = _PACKAGE / KIT
    return installed if (installed / "notebooks").is_dir() else _PACKAGE.parent


def notebooks_dir() -> Path:
    """The guided notebooks (``00_start_here.ipynb`` ...)."""
    return kit_root() / "notebooks"


def sample_dir() -> Path:
    """The sample trace (every export format of the story in ``docs/sample-story.md``)."""
    return kit_root() / "data" / "sample"


def report_notebook() -> Path:
    """The notebook ``exo-deferrals report`` runs."""
    return notebooks_dir() / REPORT_NOTEBOOK_NAME
