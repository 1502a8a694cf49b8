from django.core.management.base import BaseCommand, CommandError

from orvanta_triggers import selectors, triggerfiles


class Command(BaseCommand):
    help = (
        "Write a workspace's WebSocket triggers and flows (configuration only, no status) to stdout "
        "as YAML or JSON, in a stable order: the file importtriggers reads. It holds the triggers' "
        "headers and initial messages as stored, secrets included."
    )

    def add_arguments(self, parser):
        parser.add_argument("workspace", help="The workspace's slug.")
        parser.add_argument(
            "--path-prefix",
            help="Only the triggers whose path starts with this, the flows under it and the flows those "
            "triggers run. The file records the prefix: importtriggers --prune then deletes only under it.",
        )
        parser.add_argument("--format", choices=triggerfiles.FORMATS, default="yaml", help="Default: yaml.")

    def handle(self, *args, workspace, path_prefix=None, format="yaml", **options):
        found = selectors.workspace_by_slug(workspace)
        if found is None:
            raise CommandError(f"no workspace '{workspace}'")
        self.stdout.write(triggerfiles.export_text(workspace=found, path_prefix=path_prefix, fmt=format), ending="")
