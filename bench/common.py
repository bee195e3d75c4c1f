"""What every benchmark does with its figures: print the markdown table, keep the numbers in bench/out/."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

import psutil

OUT = Path(__file__).parent / "out"


def publish(name: str, lines: list[str], results: dict) -> int:
    """Print ``lines`` (the markdown section) and write it with ``results`` to ``bench/out/<name>.json``."""
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps({"markdown": text, "results": results}, indent=2))
    return 0


class PeakRSS:
    """The largest resident memory seen while the block runs, sampled every ``interval`` seconds.

    ``tree=True`` sums this process and all its descendants (workers, kernels) at each sample.
    """

    def __init__(self, *, tree: bool = False, interval: float = 0.005) -> None:
        self.root = psutil.Process()
        self.tree = tree
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def now(self) -> int:
        total = 0
        for process in [self.root, *(self.root.children(recursive=True) if self.tree else [])]:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> PeakRSS:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())
