"""Conformance URL runnable (trigger url "$script:conformance_url_once"): `url` the first
time it is called for that URL, and then a non-URL, which the listener takes as a
permanent error (it retries rarely, at the backoff cap).

An Autobahn case runs anew on every connection to its runCase URL, and the result of
the last run is the one reported; a trigger reconnects after the case's close, after a
random delay that can be ~0 (full jitter), before the harness has disabled it. This
makes the first run the only one. The marker files live in CONFORMANCE_ONCE_DIR, a
fresh directory per run of the harness.
"""

import hashlib
import os


def main(url: str):
    marker = os.path.join(os.environ["CONFORMANCE_ONCE_DIR"], hashlib.sha256(url.encode()).hexdigest())
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return "this Autobahn case was already run: not connecting again"
    return url
