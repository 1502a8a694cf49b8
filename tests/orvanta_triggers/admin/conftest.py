"""Fixtures of the admin tests: a staff member scoped to one workspace, another workspace, stored frames."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from orvanta_triggers import bus, monitor, services


@pytest.fixture
def staff_client(user, workspace):
    """Alice, admin of `acme` only, as a staff member with the app's model permissions."""
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="orvanta_triggers"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def other_workspace(db):
    return services.create_workspace(slug="other")


@pytest.fixture
def push_frame():
    """push_frame(trigger, msg, ...) stores a received frame where the monitor keeps them."""
    keys = []

    def push(trigger, msg, *, msg_type="text", url=None, at="2024-05-01T12:00:00+00:00"):
        key = monitor.frames_key(trigger.id)
        entry = {"at": at, "msg": msg, "msg_type": msg_type, "url": url or trigger.url}
        bus.client().lpush(key, json.dumps(entry))
        keys.append(key)
        return entry

    yield push
    for key in keys:
        bus.client().delete(key)
