"""The OpenAPI schema: served, valid, and true enough that generated requests never
get a server error (schemathesis, against the app in-process)."""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture
def token(workspace, user):
    return Token.objects.get_or_create(user=user)[0].key


@pytest.fixture
def keep_test_connection():
    """Requests through the WSGI app must not close the test's database connection
    (Django's own test client disconnects these handlers the same way)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_schema_and_docs_are_served(client):
    """/api/schema/ is OpenAPI 3 JSON and /api/docs/ renders without external assets."""
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.")
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"cdn.jsdelivr" not in docs.content


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_never_get_a_server_error(case, token, keep_test_connection):
    """Every operation, with generated inputs, answers without a 5xx."""
    if "workspace" in (case.path_parameters or {}):
        case.path_parameters["workspace"] = "acme"
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=[not_a_server_error])
