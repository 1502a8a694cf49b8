"""Sockets are opened on a few shared threads, not on each connection's own. Opening
runs the deepest call chains a connection ever runs (name resolution in C, the HTTP
upgrade in websocket-client); run on the connection's thread, they would leave stack
and Python frame pages resident there for the connection's whole life: about 4 KB per
connection, 35-40 MB at 10,000 (measured with `python -m bench scale`)."""

import concurrent.futures
import logging
import queue
import threading

logger = logging.getLogger(__name__)


class Openers:
    """Runs openings on at most `size` threads at once, started as openings need
    them. Daemon threads, unlike concurrent.futures.ThreadPoolExecutor's (which the
    interpreter joins at exit): a listener stopping never waits for a handshake in
    progress to time out."""

    def __init__(self, size, *, name="opener"):
        self._size = size
        self._name = name
        self._jobs = queue.SimpleQueue()
        self._threads = []
        self._idle = 0
        self._lock = threading.Lock()
        self._threads_started = 0

    def run(self, fn, *args, **kwargs):
        """`fn(*args, **kwargs)` on an opener thread: its result, or its exception
        raised here."""
        future = concurrent.futures.Future()
        with self._lock:
            self._jobs.put((future, fn, args, kwargs))
            if self._idle == 0 and len(self._threads) < self._size:
                self._start_thread()
        return future.result()

    def thread_count(self):
        with self._lock:
            return len(self._threads)

    def forget_dead(self):
        """Drop threads that have ended (the supervisor asks every tick): the next
        openings start new ones. How many had ended."""
        with self._lock:
            alive = [thread for thread in self._threads if thread.is_alive()]
            ended = len(self._threads) - len(alive)
            self._threads = alive
        return ended

    def stop(self):
        """Ask every thread to end once its opening, if any, is done."""
        with self._lock:
            for _ in self._threads:
                self._jobs.put(None)

    def _start_thread(self):
        self._threads_started += 1
        thread = threading.Thread(target=self._run, name=f"{self._name}-{self._threads_started}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run(self):
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            if job is None:
                return
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                # The caller's exception, raised on the caller's thread.
                future.set_exception(exc)
            else:
                future.set_result(result)
