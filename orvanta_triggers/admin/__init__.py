"""Admin: every save goes through the services (forms validate through the model's
clean(), the same path as the API, and its field-keyed errors land on their fields).

Staff see the workspaces they are members of (superusers see all): every queryset is
filtered, and an object of another workspace is a 404. Viewers read; developers and
admins write (as in the API), on top of Django's model permissions.

One module per model admin (importing them registers them with admin.site, which
Django's autodiscovery does by importing this package); forms, presentation helpers
and the roles of the requesting user in modules of their own.
"""

from django.contrib import admin

from orvanta_triggers.admin.display import frame_fingerprint
from orvanta_triggers.admin.flows import FlowAdmin
from orvanta_triggers.admin.jobs import JobAdmin
from orvanta_triggers.admin.triggers import WebSocketTriggerAdmin
from orvanta_triggers.admin.workspaces import WorkspaceAdmin

__all__ = ["FlowAdmin", "JobAdmin", "WebSocketTriggerAdmin", "WorkspaceAdmin", "frame_fingerprint"]

admin.site.site_header = "Orvanta administration"
admin.site.site_title = "Orvanta"
admin.site.index_title = "WebSocket triggers, flows and jobs"
