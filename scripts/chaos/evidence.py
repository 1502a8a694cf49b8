"""What the run reads back afterwards: the chaos runnable's execution log, the broker's
history replayed from its AOF, and the process logs."""

import base64
import collections
import json
from pathlib import Path

from scripts.chaos_runnables.chaos_record import message_key


class ExecLog:
    """Tails the chaos runnable's execution log."""

    def __init__(self, path):
        self.path = path
        self._offset = 0
        self._partial = b""
        self.starts = []  # (pid, t, message key)
        self.ends = []
        self.running = {}  # pid -> (message key, t) started and not ended

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            kind, pid, t, msg = line.decode().split("\t", 3)
            pid, t = int(pid), float(t)
            if kind == "S":
                self.starts.append((pid, t, msg))
                self.running[pid] = (msg, t)
            else:
                self.ends.append((pid, t, msg))
                if self.running.get(pid, (None,))[0] == msg:
                    del self.running[pid]


def _aof_commands(aof_dir):
    """The commands of a Redis AOF directory's incremental files, in order."""
    files = sorted(Path(aof_dir).glob("*.incr.aof"), key=lambda f: int(f.name.split(".")[-3]))
    for path in files:
        data = path.read_bytes()
        i = 0
        while i < len(data):
            if data[i : i + 1] != b"*":
                break
            j = data.index(b"\r\n", i)
            n, i, args = int(data[i + 1 : j]), j + 2, []
            for _ in range(n):
                j = data.index(b"\r\n", i)
                length, i = int(data[i + 1 : j]), j + 2
                args.append(data[i : i + length])
                i += length + 2
            yield args


def _task_msgs(payload):
    """(delivery tag, [keys of its trigger messages]) of a Celery message as kombu stores it."""
    message = json.loads(payload)
    body = json.loads(base64.b64decode(message["body"]))
    kwargs = body[1] if isinstance(body, list) and len(body) > 1 else {}
    msgs = [kwargs["msg"]] if "msg" in kwargs else [job[2] for job in kwargs.get("jobs", [])]
    return message["properties"]["delivery_tag"], [message_key(msg) for msg in msgs]


def broker_trace(aof_dir, msgs):
    """What the broker did with the task carrying each message (by key), replayed from the
    private Redis's AOF (the `celery` list and kombu's `unacked` hash): a diagnosis
    for messages that never got a job."""
    wanted = set(msgs)
    queue = collections.deque()
    pushed, popped, unacked = {}, {}, set()
    for n, args in enumerate(_aof_commands(aof_dir)):
        name = args[0].upper()
        if name in (b"LPUSH", b"RPUSH") and args[1] == b"celery":
            for value in args[2:]:
                (queue.appendleft if name == b"LPUSH" else queue.append)(value)
                try:
                    tag, carried = _task_msgs(value)
                except Exception:
                    continue
                for m in carried:
                    if m in wanted:
                        pushed.setdefault(m, (n, tag))
        elif name in (b"RPOP", b"LPOP") and args[1] == b"celery":
            for _ in range(int(args[2]) if len(args) > 2 else 1):
                if queue:
                    value = queue.pop() if name == b"RPOP" else queue.popleft()
                    try:
                        tag, _ = _task_msgs(value)
                    except Exception:
                        continue
                    popped.setdefault(tag, n)
        elif name == b"HSET" and args[1] == b"unacked":
            unacked.update(args[2::2])
    out = {}
    for m in msgs:
        if m not in pushed:
            out[m] = "never published to the broker (no LPUSH of a task carrying it)"
            continue
        n, tag = pushed[m]
        if tag not in popped:
            out[m] = f"published (AOF command #{n}) and never consumed"
        elif tag.encode() not in unacked:
            out[m] = (
                f"published (AOF #{n}), popped by a worker's BRPOP (AOF #{popped[tag]}) and never recorded in "
                f"kombu's 'unacked' hash: lost between BRPOP and the unacked bookkeeping"
            )
        else:
            out[m] = f"published (AOF #{n}), consumed (AOF #{popped[tag]}), recorded unacked: lost later"
    return out


def grep(path, needles, limit=5):
    hits = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if any(n in line for n in needles):
                    hits.append(line.rstrip())
    except OSError:
        pass
    return hits[:limit], len(hits)


# The run
