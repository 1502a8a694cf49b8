"""StorableJSONField: any JSON value Python holds is stored and read back exactly, on
PostgreSQL (which refuses U+0000 and lone surrogates) as on SQLite."""

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orvanta_triggers import services
from orvanta_triggers.fields import from_storable, to_storable
from orvanta_triggers.models import Job

# Every code point, surrogates included, and the codec's own escape character.
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=50) | st.sampled_from(
    ["\x00", "\ue000", "\ue0000000", "\ud800", "a\x00b\ue000c\udfff", "\ue000" + "0000"]
)
# Floats stay below 1e15: jsonb keeps numbers as decimals, so a larger integral float
# reads back as an int (a property of PostgreSQL's JSON, not of the codec).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(min_value=-1e15, max_value=1e15) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_the_codec_round_trips_any_json_value(value):
    """from_storable(to_storable(v)) == v for every JSON value, keys included."""
    assert from_storable(to_storable(value)) == value


@given(json_values)
def test_stored_strings_hold_nothing_postgresql_refuses(value):
    """What is stored has no U+0000 and no lone surrogate anywhere."""
    stored = repr(to_storable(value))
    assert "\x00" not in stored and not any(0xD800 <= ord(c) <= 0xDFFF for c in stored)


@pytest.mark.django_db
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=json_values, result=json_values)
def test_a_job_row_reads_back_what_was_written(workspace, args, result):
    """A job's args and result come back from the database exactly as written."""
    job_id = str(uuid.uuid4())
    services.record_jobs(
        jobs={
            job_id: {
                "workspace_id": workspace.id,
                "script_path": "examples/echo",
                "status": "success",
                "args": {"msg": args},
                "result": result,
            }
        }
    )
    job = Job.objects.get(id=job_id)
    assert (job.args, job.result) == ({"msg": args}, result)
