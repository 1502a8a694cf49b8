"""What every connection of a listener shares, and what a connection needs of each
(the supervisor builds them: dispatch.Dispatcher, status.StatusWriter,
client.runnable_calls.RunnableClient, monitor.MonitorPublisher, timers.Timers,
openers.Openers, parking.Parking)."""

from dataclasses import dataclass
from typing import Protocol


class Openers(Protocol):
    def run(self, fn, *args, **kwargs) -> object: ...


class Waits(Protocol):
    def wait(self, stream, label) -> None: ...


class Dispatch(Protocol):
    def submit(self, *, job_spec, msg, msg_type, url, cancelled) -> bool: ...


class StatusWrites(Protocol):
    def set(self, trigger_id, path, **fields) -> None: ...

    def touch(self, trigger_id, path) -> None: ...


class RunnableCalls(Protocol):
    def call(self, *, workspace_id, path, is_flow, args, cancelled, kind, trigger_path="") -> object: ...


class MonitorEvents(Protocol):
    def event(self, workspace_slug, event) -> None: ...

    def frame(self, workspace_slug, trigger_id, trigger_path, *, at, msg, msg_type, url) -> None: ...


class Timer(Protocol):
    def cancel(self) -> None: ...


class TimerThread(Protocol):
    def call_at(self, when, callback) -> Timer: ...


class TaskSender(Protocol):
    def send_task(self, name, *args, **kwargs): ...


@dataclass(frozen=True)
class ListenerServices:
    """What every connection of a listener shares."""

    listener_id: str
    celery_app: TaskSender
    dispatcher: Dispatch
    status: StatusWrites
    runnables: RunnableCalls
    monitor: MonitorEvents
    timers: TimerThread
    # Opens sockets, CONNECT_CONCURRENCY at most at once (listener.openers).
    openers: Openers
    # Where connections wait for their next frame, pongs taken meanwhile (listener.parking).
    parking: Waits
