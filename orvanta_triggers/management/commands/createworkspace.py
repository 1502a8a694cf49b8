from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from orvanta_triggers import services
from orvanta_triggers.models import Workspace


class Command(BaseCommand):
    help = "Create a workspace, optionally with an owner (made its admin)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", help="Display name (default: the slug).")
        parser.add_argument("--plan", choices=Workspace.Plan.values, default=Workspace.Plan.SELF_HOSTED)
        parser.add_argument("--owner", help="Username of an existing user who becomes the workspace's admin.")

    def handle(self, *args, slug, name=None, plan=None, owner=None, **options):
        owner_user = None
        if owner:
            owner_user = get_user_model().objects.filter(username=owner).first()
            if owner_user is None:
                raise CommandError(f"no user '{owner}' (create one with: python manage.py createsuperuser)")
        try:
            workspace = services.create_workspace(slug=slug, name=name, plan=plan, owner=owner_user)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(
            f"created workspace {workspace.slug} (plan {workspace.plan})" + (f", admin {owner}" if owner else "")
        )
