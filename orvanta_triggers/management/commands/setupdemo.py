from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from orvanta_triggers import services
from orvanta_triggers.models import Membership, WebSocketTrigger, Workspace

DEMO_WORKSPACE = "demo"
DEMO_TRIGGER = "f/demo/ticks"


class Command(BaseCommand):
    help = "Create (or refresh) the demo workspace, an admin user and a demo trigger for `make run`."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")
        parser.add_argument("--demo-url", default="ws://127.0.0.1:8000/ws/demo/")

    def handle(self, *args, username, password, demo_url, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            user = services.create_user(username=username, password=password, is_superuser=True)
        workspace = Workspace.objects.filter(slug=DEMO_WORKSPACE).first()
        if workspace is None:
            workspace = services.create_workspace(slug=DEMO_WORKSPACE, name="Demo", owner=user)
        else:
            services.set_membership(workspace=workspace, user=user, role=Membership.Role.ADMIN)
        config = dict(
            url=demo_url,
            script_path="examples/echo",
            mode=WebSocketTrigger.Mode.ENABLED,
            can_return_message=True,
            filters=[{"key": "type", "value": "tick"}],
        )
        trigger = WebSocketTrigger.objects.filter(workspace=workspace, path=DEMO_TRIGGER).first()
        if trigger is None:
            services.create_trigger(workspace=workspace, path=DEMO_TRIGGER, **config)
        else:
            services.update_trigger(trigger=trigger, **config)
        self.stdout.write(
            f"demo ready: workspace '{DEMO_WORKSPACE}', trigger '{DEMO_TRIGGER}' -> {demo_url}\n"
            f"admin user: {username} / password: {password}"
        )
