"""The formats that cross processes (orvanta_triggers.wire), and the rule that lets a
listener and a worker one release apart understand each other."""

from hypothesis import given
from hypothesis import strategies as st

from orvanta_triggers import wire


def test_a_first_attempt_leaves_attempt_out():
    """A first attempt travels without its attempt field; decoding gives attempt 1."""
    fields = wire.encode_job("j", 7, "msg", "text", "ws://x")
    assert fields == ["j", 7, "msg", "text", "ws://x"]
    assert wire.decode_job(fields).attempt == 1


def test_a_job_from_a_newer_release_decodes_ignoring_fields_it_added():
    """Trailing fields a newer writer appended are ignored by an older reader."""
    job = wire.decode_job(["j", 7, "msg", "binary", "ws://x", 3, 1.5, "a field from the future"])
    assert job == wire.WireJob("j", 7, "msg", "binary", "ws://x", 3, 1.5)


def test_a_job_from_an_older_release_decodes_without_its_arrival():
    """A job written before arrival times travelled decodes with arrived_at None."""
    assert wire.decode_job(["j", 7, "msg", "text", "ws://x", 2]).arrived_at is None


def test_an_arrival_time_travels_with_the_attempt_before_it():
    """A job with its arrival time carries the attempt too, even a first one (fields are positional)."""
    assert wire.encode_job("j", 7, "msg", "text", "ws://x", arrived_at=1.5) == ["j", 7, "msg", "text", "ws://x", 1, 1.5]


@given(
    st.text(),
    st.integers(min_value=1, max_value=2**63 - 1),
    st.text(),
    st.sampled_from(["text", "binary"]),
    st.text(),
    st.integers(min_value=1, max_value=100),
    st.none() | st.floats(min_value=0, max_value=2e9),
)
def test_jobs_round_trip(job_id, trigger_id, msg, msg_type, url, attempt, arrived_at):
    """Every job decodes to the fields it was encoded from."""
    encoded = wire.encode_job(job_id, trigger_id, msg, msg_type, url, attempt, arrived_at)
    assert wire.decode_job(encoded) == (job_id, trigger_id, msg, msg_type, url, attempt, arrived_at)


def test_a_batch_keys_specs_by_trigger_id_text():
    """A batch's specs are keyed by the trigger id as text (JSON object keys), `resent` only when true."""
    assert wire.batch({7: {"trigger_id": 7}}, [["j"]]) == {"specs": {"7": {"trigger_id": 7}}, "jobs": [["j"]]}
    assert wire.batch({}, [], resent=True)["resent"] is True


def test_results_channel_names_parse_back_to_their_trigger():
    """A results channel's name, as Redis hands it back (bytes or text), gives its trigger id."""
    channel = wire.results_channel("orvanta:x:", 42)
    assert wire.trigger_id_of_results_channel(channel) == 42
    assert wire.trigger_id_of_results_channel(channel.encode()) == 42


@given(st.one_of(st.text(), st.binary()))
def test_result_frames_round_trip_text_and_bytes(frame):
    """A text frame comes back as the same text, a binary one as the same bytes."""
    assert wire.decode_result(wire.encode_result("j", frame)) == ("j", frame)


@given(st.one_of(st.text(), st.binary(), st.integers(), st.none()))
def test_replies_round_trip(result):
    """A runnable's result reaches its caller as it was returned (bytes included)."""
    assert wire.decode_reply(wire.encode_reply(result=result)) == (True, result)


def test_an_error_reply_carries_the_error():
    """A failed runnable's reply carries its error."""
    error = {"name": "E", "message": "m", "stack": ""}
    assert wire.decode_reply(wire.encode_reply(error=error)) == (False, error)
