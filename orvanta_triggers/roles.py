"""What a member may do in a workspace, by role: the one rule the API, the admin and
redaction apply. A role of None means no membership.

Viewers read; developers and admins write (and see secrets); admins also manage the
workspace's members. Superusers are the admin's concern (orvanta_triggers.admin.access):
the API and the monitor go by membership alone.
"""

from orvanta_triggers.models import Membership

WRITE_ROLES = (Membership.Role.ADMIN, Membership.Role.DEVELOPER)


def can_read(role):
    return role is not None


def can_write(role):
    return role in WRITE_ROLES


def can_manage_members(role):
    return role == Membership.Role.ADMIN
