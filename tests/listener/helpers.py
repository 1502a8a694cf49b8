from orvanta_triggers import services
from orvanta_triggers.models import Job, WebSocketTrigger
from tests.support.wsserver import wait_for


def make_trigger(workspace, server, **fields):
    config = {"path": "f/test/feed", "url": server.url, "script_path": "examples/echo", **fields}
    return services.create_trigger(workspace=workspace, **config)


def wait_connected(server, *, count=1, timeout=10):
    wait_for(lambda: server.open_connections >= count, timeout=timeout, message=f"{count} connection(s) to the server")


def wait_status(trigger, status, *, timeout=10):
    def current():
        return WebSocketTrigger.objects.filter(pk=trigger.pk).values_list("status", flat=True).first() == status

    wait_for(current, timeout=timeout, message=f"trigger status {status}")
    return WebSocketTrigger.objects.get(pk=trigger.pk)


def wait_jobs(*, count, status=None, timeout=15, **filters):
    def jobs():
        queryset = Job.objects.filter(**filters)
        if status:
            queryset = queryset.filter(status=status)
        found = list(queryset)
        return found if len(found) >= count else None

    return wait_for(jobs, timeout=timeout, message=f"{count} {status or ''} job(s)")


def fail_once(monkeypatch, owner, name, error):
    """Make method `name` of class `owner` raise `error` on its first call only (a fault
    injected into a collaborator of what a test exercises)."""
    real = getattr(owner, name)
    errors = iter([error])

    def failing_once(self, *args, **kwargs):
        pending = next(errors, None)
        if pending is not None:
            raise pending
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, failing_once)
