"""Baseline clients, each run in a subprocess of its own (`python -m bench.clients
KIND ...`) so it has its own interpreter, GIL and /proc entry. Each prints one JSON
line per phase on stdout; times are time.monotonic() (one clock for all processes).

  raw URL N                       websocket-client recv loop, nothing else (the ceiling)
  naive URL N SPEC CAP            recv -> JSON filter -> app.send_task per matching frame
  enqueue N SPEC [MSG]            N plain send_task calls of orvanta.run_trigger_job
  rtt RATE SECS WARMUP SPEC       send_task at RATE/s, msg stamped with seq and send time
  threads BASE N                  N websocket-client threads on BASE/t/<i>, idle; then,
                                  on "hb" on stdin, each sends {"hb":1} every second;
                                  "reconnect I URL" reopens socket I on URL; SIGTERM
                                  closes every socket cleanly and exits
"""

import json
import os
import random
import signal
import sys
import threading
import time
import uuid

# What `enqueue` sends as every job's message unless it is given one.
ENQUEUE_MSG = json.dumps({"kind": "a", "seq": 0, "pad": "x" * 64})


def emit(**data):
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def celery_app():
    import django

    django.setup()
    from config.celery import app

    return app


def load_spec(path):
    with open(path) as f:
        return json.load(f)


def raw(url, n):
    import websocket

    ws = websocket.create_connection(url)
    recv = ws.recv
    recv()
    first = time.monotonic()
    for _ in range(int(n) - 1):
        recv()
    last = time.monotonic()
    emit(frames=int(n), first=first, last=last)
    ws.close()


def naive(url, n, spec_path, cap_secs):
    import websocket

    app = celery_app()
    from orvanta_triggers import filters
    from orvanta_triggers.wire import RUN_TRIGGER_JOB

    spec_file = load_spec(spec_path)
    spec, trigger_filters = spec_file["spec"], spec_file["filters"]
    ws = websocket.create_connection(url)
    n, cap_secs = int(n), float(cap_secs)
    first = last = None
    sent = frames = 0
    deadline = None
    for _ in range(n):
        msg = ws.recv()
        if first is None:
            first = time.monotonic()
            deadline = first + cap_secs
        frames += 1
        if filters.matches(filters.parse_json(msg), trigger_filters, "and"):
            job_id = str(uuid.uuid4())
            app.send_task(
                RUN_TRIGGER_JOB,
                kwargs={"job_id": job_id, "spec": spec, "msg": msg, "msg_type": "text", "url": url},
                task_id=job_id,
                retry=False,
            )
            sent += 1
            last = time.monotonic()
            if last > deadline:
                break
    emit(frames=frames, sent=sent, first=first, last=last, partial=frames < n)
    ws.close()


def enqueue(n, spec_path, msg=ENQUEUE_MSG):
    app = celery_app()
    from orvanta_triggers.wire import RUN_TRIGGER_JOB

    spec = load_spec(spec_path)["spec"]
    first = time.monotonic()
    for _ in range(int(n)):
        job_id = str(uuid.uuid4())
        app.send_task(
            RUN_TRIGGER_JOB,
            kwargs={"job_id": job_id, "spec": spec, "msg": msg, "msg_type": "text", "url": "ws://127.0.0.1/bench"},
            task_id=job_id,
            retry=False,
        )
    emit(sent=int(n), first=first, last=time.monotonic())


def rtt(rate, secs, warmup, spec_path):
    """The plain Celery round trip's sending half: one run_trigger_job per message at
    `rate`; the bench process receives the results on the trigger's result channel."""
    app = celery_app()
    from orvanta_triggers.wire import RUN_TRIGGER_JOB

    spec = load_spec(spec_path)["spec"]
    rate, secs, warmup = float(rate), float(secs), float(warmup)
    period = 1.0 / rate
    total = int((secs + warmup) * rate)
    start = time.monotonic() + 0.05
    sent = 0
    for seq in range(total):
        at = start + seq * period
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        job_id = str(uuid.uuid4())
        msg = json.dumps({"seq": seq, "t": time.monotonic(), "w": seq < warmup * rate})
        app.send_task(
            RUN_TRIGGER_JOB,
            kwargs={"job_id": job_id, "spec": spec, "msg": msg, "msg_type": "text", "url": "ws://127.0.0.1/bench"},
            task_id=job_id,
            retry=False,
        )
        sent += 1
    emit(sent=sent, measured=sent - int(warmup * rate), first=start, last=time.monotonic())


def threads(base, n):
    import websocket

    n = int(n)
    rss0 = rss_bytes()
    connected = threading.Semaphore(0)
    sockets = [None] * n
    holders = [None] * n
    errors = []

    def hold(i, url, done):
        try:
            ws = websocket.create_connection(url)
        except Exception as exc:
            errors.append(repr(exc))
            done.release()
            return
        sockets[i] = ws
        done.release()
        try:
            while True:
                ws.recv()
        except Exception:
            pass

    def open_socket(i, url, done):
        holders[i] = threading.Thread(target=hold, args=(i, url, done), daemon=True)
        holders[i].start()

    # Heartbeat threads start parked on this and all go at once: thousands of threads
    # starting while the first ones already beat would fight over the GIL for minutes.
    beating = threading.Event()

    def beat(i):
        ws = sockets[i]
        beating.wait()
        next_at = time.monotonic() + 1.0 + random.random()
        while True:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                ws.send('{"hb":1}')
            except Exception:
                return
            next_at += 1.0

    def close_all(signum, frame):
        # What a bare client does on SIGTERM: a close frame on every socket, wait for
        # the server's answers (each reader thread ends on it), exit.
        for ws in sockets:
            if ws is not None:
                try:
                    ws.send_close()
                except Exception:
                    pass
        deadline = time.monotonic() + 10
        for thread in holders:
            if thread is not None:
                thread.join(max(deadline - time.monotonic(), 0))
        os._exit(0)

    signal.signal(signal.SIGTERM, close_all)
    started = time.monotonic()
    for i in range(n):
        open_socket(i, f"{base}/t/{i}", connected)
    for _ in range(n):
        connected.acquire()
    done = time.monotonic()
    emit(
        phase="connected",
        rss0=rss0,
        connect_secs=done - started,
        connected=n - len(errors),
        errors=errors[:3],
        first=started,
        last=done,
    )
    for line in sys.stdin:
        command, *args = line.split()
        if command == "hb":
            for i in range(n):
                if sockets[i] is not None:
                    threading.Thread(target=beat, args=(i,), daemon=True).start()
            beating.set()
            emit(phase="hb", at=time.monotonic())
        elif command == "reconnect":
            # The bare equivalent of an edited trigger: close one socket cleanly, open
            # it again on its new URL.
            i, url = int(args[0]), args[1]
            sockets[i].send_close()
            holders[i].join(10)
            reopened = threading.Semaphore(0)
            open_socket(i, url, reopened)
            reopened.acquire()
        elif command == "quit":
            break
    os._exit(0)


def main(argv):
    kind, args = argv[0], argv[1:]
    {"raw": raw, "naive": naive, "enqueue": enqueue, "rtt": rtt, "threads": threads}[kind](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
