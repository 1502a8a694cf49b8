"""The run's knobs (CHAOS_* environment variables, read once at import) and its fixed settings."""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def _env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


N_TRIGGERS = int(_env_float("CHAOS_TRIGGERS", 20))
RATE = _env_float("CHAOS_RATE", 2.0)
PHASE_SECS = _env_float("CHAOS_PHASE_SECS", 20)
DROP_MIN_SECS = _env_float("CHAOS_DROP_MIN_SECS", 5)
DROP_MAX_SECS = _env_float("CHAOS_DROP_MAX_SECS", 15)
REDIS_DOWN_SECS = _env_float("CHAOS_REDIS_DOWN_SECS", 3)
PG_DOWN_SECS = _env_float("CHAOS_PG_DOWN_SECS", 10)
POISON_FEEDS = int(_env_float("CHAOS_POISON_FEEDS", 4))
POISON_EVERY_SECS = _env_float("CHAOS_POISON_EVERY_SECS", 3)
DRAIN_TIMEOUT_SECS = _env_float("CHAOS_DRAIN_TIMEOUT_SECS", 150)
SLEEP_MS = os.environ.get("CHAOS_SLEEP_MS", "20-60")
SEED = int(_env_float("CHAOS_SEED", time.time_ns() % 1_000_000))
KEEP_WORK_DIR = os.environ.get("CHAOS_KEEP_WORK_DIR", "") not in ("", "0")

LEASE_TTL_SECS = 5.0
TAKEOVER_LIMIT_SECS = LEASE_TTL_SECS + 2.0
CONNECT_TIMEOUT_SECS = 60
SETTLE_TIMEOUT_SECS = 20
STOP_TIMEOUT_SECS = 20
DROP_CODES = (1000, 1001, 1011, 1012, 1013, 1014, 3000, 4000, 4321)
SCRIPT_PATH = "chaos_record"
POISON_KINDS = ("nul", "deep", "big", "binary")
DEEP_LEVELS = 200_000
BIG_BYTES = 900_000
BINARY_BYTES = 4096
# Summary only: how many messages were written to L1 this close to its death.
NEAR_KILL_SECS = 0.05
