"""What every scenario needs: where results and logs go, knobs from the environment,
waiting, the table's rows, and the scenarios' errors. Beside it:
`processes` (a private Redis, a fresh PostgreSQL database, subprocesses in process
groups of their own), `readers` (/proc and the listener's Prometheus metrics) and
`context` (the Bench the scenarios share).

Times that cross processes are time.monotonic() values: CLOCK_MONOTONIC is one
system-wide clock on Linux, so a stamp taken in a subprocess compares with one taken
here.
"""

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.support.wsserver import wait_for as support_wait_for

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS_DIR = ROOT / "bench" / "results"
LOG_DIR = RESULTS_DIR / "logs"
T0 = time.monotonic()


class BenchError(Exception):
    """A scenario could not be measured (its row says why)."""


def log(message):
    print(f"[bench +{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def env_int(name, default):
    value = os.environ.get(name)
    return int(float(value)) if value not in (None, "") else default


def env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def wait_for(predicate, *, timeout, what, interval=0.05):
    """Poll until predicate() is truthy; its value. BenchError at the deadline."""
    return support_wait_for(predicate, timeout=timeout, message=what, interval=interval, error=BenchError)


# Results


@dataclass
class Row:
    """One line of the table: a figure, its target, the value measured and the
    baseline measured in the same run (or, where marked, quoted from the issue)."""

    scenario: str
    figure: str
    unit: str
    target: str = ""
    met: bool | None = None
    measured: float | None = None
    baseline: float | None = None
    baseline_label: str = ""
    higher_is_better: bool = True
    note: str = ""
    error: str | None = None
    # Shown instead of the number when there is none (e.g. "> 40 s": results lost) or
    # when the row holds two (latency: "5.4 / 12.8 ms", p50 / p99).
    measured_shown: str | None = None
    baseline_shown: str | None = None
    ratio_shown: str | None = None

    @property
    def ratio(self):
        if self.measured is None or not self.baseline:
            return None
        return self.measured / self.baseline

    def as_json(self):
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


@dataclass
class ScenarioResult:
    name: str
    status: str = "ok"  # ok | crashed | skipped
    error: str | None = None
    seconds: float = 0.0
    rows: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    trimmed: list = field(default_factory=list)
