"""pytest plugin: a test process that outlives its session by more than
`exit_deadline_secs` prints every thread's stack and exits with status 1.

A test that leaves a non-daemon thread stuck (an event loop thread that never ends,
say) otherwise holds the process at interpreter exit, after the summary line, until
CI's own time limit kills it: hours of a hung run instead of a red one."""

import faulthandler

import pytest


def pytest_addoption(parser):
    parser.addini(
        "exit_deadline_secs",
        "seconds the process may take to exit once the session is over",
        default="60",
    )


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # faulthandler's watchdog is a C thread: it fires even while the main thread is
    # blocked joining Python threads at exit. A process that exits in time cancels it.
    faulthandler.dump_traceback_later(float(config.getini("exit_deadline_secs")), exit=True)
