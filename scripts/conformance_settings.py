"""`make conformance`'s settings: where its files go, the agents and case groups,
Autobahn's verdicts, and the knobs read from the environment (CONFORMANCE_*).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RUN_DIR = ROOT / ".run" / "conformance"
REPORT_DIR = RUN_DIR / "reports"
LOG_DIR = RUN_DIR / "logs"
ONCE_DIR = RUN_DIR / "once"

LISTENER_AGENT = "orvanta-listener"
CLIENT_AGENT = "websocket-client"
AGENTS = (LISTENER_AGENT, CLIENT_AGENT)
GROUPS = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits/performance",
}
# Autobahn's verdicts, best first; "not run" is ours: a case missing from the report.
VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "not run")
FAILING = {"FAILED", "not run"}
LARGE_MESSAGE_GROUP = "9"
LARGE_MESSAGE_BYTES = 32 * 1024 * 1024
LATENCY_CASES = ("9.7.", "9.8.")

CASES = [c.strip() for c in os.environ.get("CONFORMANCE_CASES", "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*").split(",")]
CONCURRENCY = int(os.environ.get("CONFORMANCE_CONCURRENCY", "8"))
LARGE_CONCURRENCY = int(os.environ.get("CONFORMANCE_LARGE_CONCURRENCY", "2"))
LATENCY_CONCURRENCY = int(os.environ.get("CONFORMANCE_LATENCY_CONCURRENCY", "2"))
CASE_TIMEOUT_SECS = float(os.environ.get("CONFORMANCE_CASE_TIMEOUT_SECS", "120"))
POSTGRES_ADMIN_URL = os.environ.get("CONFORMANCE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# After its trigger is deleted, a case ends as soon as the listener closes the socket.
CASE_END_AFTER_DELETE_SECS = 30
START_TIMEOUT_SECS = 60
STOP_TIMEOUT_SECS = 15


def group_of(case_id):
    return case_id.split(".", 1)[0]
