"""Whatever a frame contains, end to end (real WebSocket server, listener, Celery worker,
Redis and database): every frame the listener accepts becomes exactly one job whose
script saw exactly that frame, and the trigger stays connected and producing jobs.

Hypothesis runs inside each test function, so the server, listener and worker start
once per test rather than once per example; jobs are told apart by the rows already
seen before each frame was sent."""

import base64
import itertools
import json

from django.conf import settings as django_settings
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from orvanta_triggers.filters import MAX_JSON_DEPTH
from orvanta_triggers.models import Job
from tests.listener.helpers import make_trigger, wait_status
from tests.support.wsserver import wait_for

MAX_BYTES = django_settings.ORVANTA_MAX_MESSAGE_BYTES
JOB_TIMEOUT_SECS = 30
FINISHED = (Job.Status.SUCCESS, Job.Status.FAILURE)

# Shrinking would replay frames through the whole pipeline, each failing step waiting
# out a deadline: a failure reports the example as generated instead.
PROPERTY_SETTINGS = settings(
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def nested(depth, shape):
    """JSON text nesting `depth` levels: arrays "[[...]]" or objects {"a": {"a": ... 0}}."""
    if shape == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "0" + "}" * depth


# WebSocket text is UTF-8: st.text() draws any code point but lone surrogates.
text_frames = st.text()
nul_frames = st.lists(st.text(max_size=8) | st.just("\x00"), min_size=1, max_size=8).map("".join)
stomp_frames = st.builds(
    lambda command, headers, body: f"{command}\n{headers}\n\n{body}\x00",
    st.sampled_from(["MESSAGE", "CONNECTED", "RECEIPT", "ERROR"]),
    st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters=":\n\r\x00"), max_size=10), max_size=3
    ).map(lambda values: "\n".join(f"h{i}:{value}" for i, value in enumerate(values))),
    st.text(max_size=40),
)
# Arrays up to 200,000 deep (400 KB); objects 6 bytes a level, so up to 170,000 (1.02 MB).
deep_frames = st.integers(1, 200_000).map(lambda n: nested(n, "array")) | st.integers(1, 170_000).map(
    lambda n: nested(n, "object")
)
frames = text_frames | nul_frames | stomp_frames | st.binary() | deep_frames


def expected_event(frame):
    """(msg, msg_type) as the script should see the frame."""
    if isinstance(frame, bytes):
        return base64.b64encode(frame).decode("ascii"), "binary"
    return frame, "text"


def size_of(frame):
    return len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8"))


def wait_new_jobs(seen, *, count):
    """The jobs not in `seen` once `count` of them exist and all have finished (the row
    is read only then: frames may be a megabyte); each is added to `seen`."""

    def finished():
        rows = list(Job.objects.exclude(pk__in=seen).values_list("pk", "status"))
        return rows if len(rows) >= count and all(status in FINISHED for _, status in rows) else None

    rows = wait_for(finished, timeout=JOB_TIMEOUT_SECS, message=f"{count} new finished job(s)")
    seen.update(pk for pk, _ in rows)
    return list(Job.objects.filter(pk__in=[pk for pk, _ in rows]))


def frames_matched():
    return REGISTRY.get_sample_value("orvanta_listener_frames_matched_total") or 0


def test_every_accepted_frame_becomes_one_job_that_saw_exactly_it(e2e_workspace, ws_server, celery_worker, listener):
    """Any text (NUL, STOMP, 200,000-deep JSON, up to the size limit) or binary frame is one job that saw exactly it."""
    # No filters, but a heartbeat state field: the listener parses every text frame as JSON.
    trigger = make_trigger(
        e2e_workspace,
        ws_server,
        script_path="msg_type",
        heartbeat={"interval_secs": 3600, "message": "{{state}}", "state_field": "s"},
    )
    wait_status(trigger, "connected")
    seen = set()
    sent = 0

    @settings(PROPERTY_SETTINGS, max_examples=150)
    @given(frame=frames)
    @example(frame="")
    @example(frame="\x00")
    @example(frame="MESSAGE\ndestination:/topic/a\ncontent-type:text/plain\n\nhello\x00")
    @example(frame='{"s": "\\u0000", "t": "\x00"}')
    @example(frame=b"")
    @example(frame=b"\x00\x01binary\xff")
    @example(frame=nested(200_000, "array"))
    @example(frame=nested(170_000, "object"))
    @example(frame='{"s":' + nested(MAX_JSON_DEPTH, "array") + "}")
    @example(frame='{"s":' + nested(MAX_JSON_DEPTH + 1, "array") + "}")
    @example(frame="x" * 900_000)
    @example(frame="\U0001f600\x00" * 180_000)
    @example(frame=bytes(range(256)) * 3500)
    @example(frame="y" * MAX_BYTES)
    @example(frame=b"\xff" * MAX_BYTES)
    def each_frame_is_one_job(frame):
        nonlocal sent
        assert size_of(frame) <= MAX_BYTES
        msg, msg_type = expected_event(frame)
        ws_server.send_all(frame)
        sent += 1
        [job] = wait_new_jobs(seen, count=1)
        assert job.status == Job.Status.SUCCESS, job.error
        assert job.args == {"msg": msg, "msg_type": msg_type}
        assert job.result == {"msg": msg, "msg_type": msg_type}
        assert job.trigger_path == trigger.path

    each_frame_is_one_job()

    # Still the same connection, still producing jobs, and nothing more than one job a frame.
    ws_server.send_all("still here")
    [job] = wait_new_jobs(seen, count=1)
    assert job.result == {"msg": "still here", "msg_type": "text"}
    assert Job.objects.count() == len(seen) == sent + 1
    trigger = wait_status(trigger, "connected")
    assert trigger.error is None
    assert ws_server.connects == 1


def test_deep_frames_leave_a_filtered_trigger_working(e2e_workspace, ws_server, celery_worker, listener):
    """A frame of any depth never stops a filtered trigger; nested past MAX_JSON_DEPTH it counts as not JSON."""
    trigger = make_trigger(e2e_workspace, ws_server, filters=[{"key": "type", "value": "x"}])
    wait_status(trigger, "connected")
    seen = set()
    markers = itertools.count()

    @settings(PROPERTY_SETTINGS, max_examples=40)
    @given(depth=st.integers(1, 170_000), shape=st.sampled_from(["array", "object", "matching"]))
    @example(depth=200_000, shape="array")
    @example(depth=170_000, shape="object")
    @example(depth=MAX_JSON_DEPTH - 1, shape="matching")
    @example(depth=MAX_JSON_DEPTH, shape="matching")
    @example(depth=200_000, shape="matching")
    def deep_frame_then_matching_frame(depth, shape):
        if shape == "matching":
            # {"type": "x", "d": [[...]]} nests depth + 1 levels.
            deep = '{"type": "x", "d": ' + nested(depth, "array") + "}"
            deep_is_job = depth + 1 <= MAX_JSON_DEPTH
        else:
            deep, deep_is_job = nested(depth, shape), False
        marker = json.dumps({"type": "x", "marker": next(markers)})
        matched_before = frames_matched()
        ws_server.send_all(deep)
        ws_server.send_all(marker)
        expected = [deep, marker] if deep_is_job else [marker]
        jobs = wait_new_jobs(seen, count=len(expected))
        assert sorted(job.args["msg"] for job in jobs) == sorted(expected)
        assert all(job.status == Job.Status.SUCCESS and job.result == job.args["msg"] for job in jobs)
        # Frames are handled in order on one thread: by the marker's job, the deep frame's
        # fate is decided, so no job for it can still be on its way.
        assert frames_matched() - matched_before == len(expected)

    deep_frame_then_matching_frame()

    assert Job.objects.count() == len(seen)
    trigger = wait_status(trigger, "connected")
    assert trigger.error is None
    assert ws_server.connects == 1
