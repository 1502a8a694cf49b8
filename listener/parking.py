"""Connections waiting for their next frame wait on one shared thread, not each in
its own poll(). At 10,000 connections pinged every 20 s, 500 pongs a second each woke
its connection's thread (2.4 wake-ups a pong, counting the GIL hand-offs among 10,000
threads) only to note when it came: 2.3 points of a core at idle. The parking thread
watches every waiting socket in one epoll, takes the pongs itself (many per wake),
and wakes a connection's thread only when a frame, the end of the stream or an error
is there for it (BoundedSocket.read_parked)."""

import logging
import select
import socket
import threading

logger = logging.getLogger(__name__)

# Linux only: elsewhere connections wait on their own threads, as they did before.
_epoll = getattr(select, "epoll", None)
# One event per arming: a socket handed to its reader is not watched meanwhile (its
# reader re-arms it when it parks again), so a hand-over costs no system call here.
_ARMED = getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLONESHOT", 0)


class Parking:
    def __init__(self, *, name="parking"):
        self._name = name
        self._lock = threading.Lock()
        self._epoll = None
        self._wakeup_recv = None
        self._wakeup_send = None
        # Parked sockets by file descriptor: (stream, waiter, label). Whoever pops an
        # entry (the thread waking it, a stop, or a waiter that saw the stop) owns
        # it and releases its waiter.
        self._parked = {}
        # Whether sockets may park: false before start, while stopping, and once the
        # thread has ended (it released every waiter on its way out).
        self._watching = False
        self._thread = None
        # A stopping listener's sockets: those it sent its close frame on (added under
        # the lock, as the frame goes: an answer is never taken for anything else), and
        # those whose server has answered (shut down here, their readers left waiting).
        self._closing_quietly = False
        self._awaiting_answer = set()
        self._answered = set()
        self._answer_came = threading.Event()

    def start(self):
        if _epoll is None:
            return
        with self._lock:
            self._epoll = _epoll()
            self._wakeup_recv, self._wakeup_send = socket.socketpair()
            self._wakeup_recv.setblocking(False)
            self._epoll.register(self._wakeup_recv.fileno(), select.EPOLLIN)
            self._watching = True
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def is_alive(self):
        """Whether the thread runs (always, where there is no epoll to run it on)."""
        return _epoll is None or (self._thread is not None and self._thread.is_alive())

    def stop(self):
        """Stop watching; waiting readers wake and wait on their own threads. Those
        whose close answer a stopping listener left here (close_quietly) are not
        woken: their sockets are closed, and they end with the process. Woken, 10,000
        of them held the GIL for seconds of a stopping listener's exit."""
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

    def takes_close_answers(self):
        """Whether the thread runs to take a stopping listener's close answers."""
        return self._watching

    def close_quietly(self, stream, code):
        """For a stopping listener: send `stream` a close frame with `code` if its
        socket takes it now (False if not, and nothing sent). When the server answers
        while the reader waits here (its close frame, the end of the stream, or
        anything else that comes first), this thread shuts the socket down and the
        reader is never woken (see stop()): 10,000 readers woken to read their close
        handshakes, CLOSE_WINDOW at a time, made a stopping listener take 4-9 s."""
        with self._lock:
            self._closing_quietly = True
            if not stream.send_close_now(code):
                return False
            self._awaiting_answer.add(stream)
        return True

    def close_answered(self, stream):
        """Whether `stream`'s server answered its close frame (and the socket is shut)."""
        return stream in self._answered

    def wait_for_answers(self, timeout):
        """Wait up to `timeout` for the next close answer."""
        self._answer_came.wait(timeout)
        self._answer_came.clear()

    def parked(self):
        """How many sockets wait here (for tests)."""
        return len(self._parked)

    def wait(self, stream, label):
        """Block until `stream` (a BoundedSocket) has something for its reader, which
        `stream.read_parked()` decides on this thread; at once when not watching.
        `label` names the stream in log lines."""
        if not self._watching:
            return
        waiter = threading.Lock()
        waiter.acquire()
        fd = stream.fileno()
        epoll = self._epoll
        self._parked[fd] = (stream, waiter, label)
        # No lock of ours around the arming: epoll_ctl lets go of the GIL, and
        # thousands of connections parking at once would queue on a lock held across
        # it. A stop racing with it is settled below.
        try:
            self._arm(epoll, fd)
        except (ValueError, OSError):
            # The epoll was closed by a stop.
            self._parked.pop(fd, None)
            return
        if not self._watching and self._parked.pop(fd, None) is not None:
            # Stopped meanwhile, and this waiter took its entry back before the stop did.
            return
        waiter.acquire()

    @staticmethod
    def _arm(epoll, fd):
        """Watch `fd` for one event (it stays registered while its socket lives)."""
        try:
            epoll.modify(fd, _ARMED)
        except FileNotFoundError:
            epoll.register(fd, _ARMED)

    def _run(self):
        wakeup = self._wakeup_recv.fileno()
        try:
            while self._watching:
                for fd, _ in self._epoll.poll():
                    if fd == wakeup:
                        self._wakeup_recv.recv(64)
                    else:
                        self._look(fd)
        except Exception:
            logger.exception(
                "parking thread %s failed; connections wait on their own threads until it is started again", self._name
            )
        finally:
            self._release_all()

    def _look(self, fd):
        entry = self._parked.get(fd)
        if entry is None:
            # Its reader was woken meanwhile (a stop), and reads it itself.
            return
        stream, waiter, label = entry
        if self._closing_quietly:
            with self._lock:
                awaiting = stream in self._awaiting_answer
            if awaiting:
                self._take_close_answer(stream)
                return
        try:
            wake = stream.read_parked()
        except Exception:
            # A bug reading one socket must not leave its reader waiting for ever.
            logger.exception("trigger %s: reading its socket on the parking thread failed", label)
            wake = True
        if wake:
            if self._parked.pop(fd, None) is entry:
                waiter.release()
        elif self._parked.get(fd) is entry:
            try:
                self._arm(self._epoll, fd)
            except OSError:
                logger.exception("trigger %s: could not watch its socket again; its reader reads it", label)
                if self._parked.pop(fd, None) is entry:
                    waiter.release()

    def _take_close_answer(self, stream):
        """Shut down a socket whose server answered its close frame; its reader stays
        parked, not watched again (stop() closes the socket)."""
        try:
            stream.shutdown(socket.SHUT_RDWR)
        except OSError:
            # Already shut by the peer: the answer was the end of the stream.
            pass
        self._answered.add(stream)
        self._answer_came.set()

    def _release_all(self):
        with self._lock:
            self._watching = False
            for fd, _ in list(self._parked.items()):
                entry = self._parked.pop(fd, None)
                if entry is None:
                    continue
                stream, waiter, _ = entry
                if stream in self._answered:
                    stream.close()
                else:
                    waiter.release()
            # One system call, where unregistering each socket took one each.
            self._epoll.close()
            self._wakeup_recv.close()
            self._wakeup_send.close()
