"""Connections waiting for their next frame wait on one shared thread, not each in
its own poll(). At 10,000 connections pinged every 20 s, 500 pongs a second each woke
its connection's thread (2.4 wake-ups a pong, counting the GIL hand-offs among 10,000
threads) only to note when it came: 2.3 points of a core at idle. The parking thread
watches every waiting socket in one selector, takes the pongs itself (many per wake),
and wakes a connection's thread only when a frame, the end of the stream or an error
is there for it (BoundedSocket.read_parked)."""

import logging
import selectors
import socket
import threading

logger = logging.getLogger(__name__)


class Parking:
    def __init__(self, *, name="parking"):
        self._name = name
        self._lock = threading.Lock()
        self._selector = None
        self._wakeup_recv = None
        self._wakeup_send = None
        # Parked sockets by file descriptor: (stream, waiter, label). Whoever pops an
        # entry (the thread waking it, a stop, or a waiter that saw the stop) owns it.
        self._parked = {}
        # Whether sockets may park: false before start, while stopping, and once the
        # thread has ended (it released every waiter on its way out).
        self._watching = False
        self._thread = None

    def start(self):
        with self._lock:
            self._selector = selectors.DefaultSelector()
            self._wakeup_recv, self._wakeup_send = socket.socketpair()
            self._wakeup_recv.setblocking(False)
            self._selector.register(self._wakeup_recv, selectors.EVENT_READ)
            self._watching = True
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def is_alive(self):
        return self._thread is not None and self._thread.is_alive()

    def stop(self):
        """Stop watching; waiting readers wake and wait on their own threads."""
        with self._lock:
            if not self._watching:
                return
            self._watching = False
            wakeup = self._wakeup_send
        try:
            wakeup.send(b"\0")
        except OSError:
            pass
        self._thread.join(2.0)

    def parked(self):
        """How many sockets wait here (for tests and metrics)."""
        return len(self._parked)

    def wait(self, stream, label):
        """Block until `stream` (a BoundedSocket) has something for its reader, which
        `stream.read_parked()` decides on this thread; at once when not watching.
        `label` names the stream in log lines."""
        waiter = threading.Lock()
        waiter.acquire()
        fd = stream.fileno()
        selector = self._selector
        self._parked[fd] = (stream, waiter, label)
        # No lock of ours around the registration: epoll_ctl lets go of the GIL, and
        # thousands of connections parking at once queued on a lock held across it
        # (10,000 took 7 s longer to connect). A stop racing with it is settled below.
        try:
            selector.register(fd, selectors.EVENT_READ)
        except (ValueError, OSError):
            # The selector was closed by a stop.
            self._parked.pop(fd, None)
            return
        if not self._watching and self._parked.pop(fd, None) is not None:
            # Stopped meanwhile, and this waiter took its entry back before the stop did.
            self._unregister(selector, fd)
            return
        waiter.acquire()

    def _run(self):
        try:
            while self._watching:
                for key, _ in self._selector.select():
                    if key.fileobj is self._wakeup_recv:
                        self._wakeup_recv.recv(64)
                    else:
                        self._look(key.fd)
        except Exception:
            logger.exception(
                "parking thread %s failed; connections wait on their own threads until it is started again", self._name
            )
        finally:
            self._release_all()

    def _look(self, fd):
        entry = self._parked.get(fd)
        if entry is None:
            return
        stream, waiter, label = entry
        try:
            wake = stream.read_parked()
        except Exception:
            # A bug reading one socket must not leave its reader waiting for ever.
            logger.exception("trigger %s: reading its socket on the parking thread failed", label)
            wake = True
        if wake and self._parked.pop(fd, None) is entry:
            self._unregister(self._selector, fd)
            waiter.release()

    @staticmethod
    def _unregister(selector, fd):
        try:
            selector.unregister(fd)
        except (KeyError, ValueError, OSError):
            # Already gone with a closed selector.
            pass

    def _release_all(self):
        with self._lock:
            self._watching = False
            for fd, _ in list(self._parked.items()):
                entry = self._parked.pop(fd, None)
                if entry is not None:
                    self._unregister(self._selector, fd)
                    entry[1].release()
            self._selector.close()
            self._wakeup_recv.close()
            self._wakeup_send.close()
