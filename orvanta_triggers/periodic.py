"""A worker's background duties: each a daemon thread of its main process doing one
thing every interval until stopped (heldmessages, sweeper)."""

import contextlib
import threading


class PeriodicThread:
    """Calls `tick(session)` every `interval_secs` on a thread of its own, where
    `session` is what `session()` gives for the thread's life (nothing by default).
    One stop event drives it: waiting on it is the sleep."""

    def __init__(self, *, name, interval_secs):
        self._interval = interval_secs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def session(self):
        return contextlib.nullcontext()

    def tick(self, session):
        raise NotImplementedError

    def _run(self):
        with self.session() as session:
            while not self._stop.wait(self._interval):
                self.tick(session)
