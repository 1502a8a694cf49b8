"""listener.openers: sockets opened on a few shared threads, at most `size` at once."""

import threading

import pytest

from listener.openers import Openers
from tests.support.wsserver import wait_for


@pytest.fixture
def openers():
    pool = Openers(2, name="test-opener")
    yield pool
    pool.stop()


def test_an_opening_returns_its_result_to_the_caller(openers):
    """run() returns what the function returned, computed on an opener thread."""
    assert openers.run(lambda: threading.current_thread().name).startswith("test-opener-")


def test_threads_start_as_openings_need_them(openers):
    """No thread runs before the first opening, which starts one."""
    assert openers.thread_count() == 0
    openers.run(lambda: None)
    assert openers.thread_count() == 1


def test_an_opening_raises_its_exception_on_the_caller(openers):
    """run() raises what the function raised, and the opener thread lives on for the next."""

    def fail():
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError, match="refused"):
        openers.run(fail)
    assert openers.run(lambda: 42) == 42
    assert openers.forget_dead() == 0


def test_no_more_than_size_openings_run_at_once(openers):
    """Openings beyond the pool's size wait for a thread, and threads start only as needed."""
    release = threading.Event()
    running, most = [], []
    lock = threading.Lock()

    def opening():
        with lock:
            running.append(1)
            most.append(len(running))
        release.wait(5)
        with lock:
            running.pop()

    callers = [threading.Thread(target=openers.run, args=(opening,)) for _ in range(5)]
    for caller in callers:
        caller.start()
    wait_for(lambda: len(running) == 2, timeout=5, message="two openings running")
    release.set()
    for caller in callers:
        caller.join(5)
    assert max(most) == 2
    assert openers.thread_count() == 2


def test_stopped_openers_threads_end(openers):
    """stop() ends every opener thread; forget_dead() then drops them."""
    openers.run(lambda: None)
    openers.stop()
    wait_for(lambda: openers.forget_dead() == 1, timeout=5, message="the opener thread to end")
    assert openers.thread_count() == 0
