"""`python -m scripts.chaos` (`make chaos`): runs the scenario, cleans up whatever
happened, and exits 0 (passed), 1 (an assertion failed) or 2 (the run did not complete)."""

import signal
import sys
import time

from scripts.chaos.console import T0, step
from scripts.chaos.scenario import Chaos


def _raise_on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_on_signal)
    chaos = Chaos()
    crashed = None
    try:
        chaos.run()
    except BaseException as exc:  # noqa: BLE001 - report anything, then clean up
        crashed = exc
        import traceback

        traceback.print_exc()
    finally:
        step("cleaning up (processes, Redis, PostgreSQL, work dir)")
        chaos.cleanup(keep_broker_data=crashed is not None or bool(chaos.failures))
        step(f"done in {time.time() - T0:.0f}s; logs kept in {chaos.log_dir}")
    if crashed is not None:
        if chaos.procs is not None:
            for name, path in chaos.procs.logs.items():
                print(f"  log {name}: {path}", flush=True)
        print(f"CHAOS FAILED: the run did not complete: {crashed}", flush=True)
        return 2
    if chaos.failures:
        print("CHAOS FAILED:", flush=True)
        for failure in chaos.failures:
            print(f"  - {failure}", flush=True)
        return 1
    print("CHAOS PASSED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
