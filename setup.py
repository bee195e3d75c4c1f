"""Build hook: the wheel carries the guided notebooks and the sample trace as package data.

The checkout keeps them at the top (``notebooks/``, ``data/sample/``); ``build_py`` copies them into
``analysis/kit/`` of the build (plain copies, no symlinks: Windows-safe), where
:mod:`analysis.core.bundled` finds them once installed. Editable installs skip the copy and use the checkout.
Everything else is declared in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLED = {"notebooks": "notebooks", "data/sample": "data/sample"}  # checkout folder -> folder under analysis/kit
SKIP = shutil.ignore_patterns(".ipynb_checkpoints", "exports", "charts", "__pycache__")


class BuildWithKit(build_py):
    """``build_py`` that also copies the notebooks and the sample into ``analysis/kit/``."""

    def run(self) -> None:
        editable = getattr(self, "editable_mode", False)
        if not editable:  # an earlier build's files (a module since deleted) must not reach this wheel
            shutil.rmtree(Path(self.build_lib) / "analysis", ignore_errors=True)
        super().run()
        if editable:
            return
        kit = Path(self.build_lib) / "analysis" / "kit"
        for source, target in BUNDLED.items():
            if not (HERE / source).is_dir():
                raise SystemExit(f"setup.py: {HERE / source} is missing; build from a checkout or its sdist")
            shutil.rmtree(kit / target, ignore_errors=True)
            shutil.copytree(HERE / source, kit / target, ignore=SKIP)


setup(cmdclass={"build_py": BuildWithKit})
