from django.core.management.base import BaseCommand, CommandError

from orvanta_triggers import selectors, triggerfiles


class Command(BaseCommand):
    help = (
        "Create or update a workspace's WebSocket triggers and flows by path from FILE, in one "
        "transaction, and print what changes. FILE is what exporttriggers writes (YAML, or JSON when "
        "it ends in .json), a Windmill trigger file or trigger JSON, a list of triggers, or a directory "
        "of *.websocket_trigger.yaml files (a wmill sync tree). Only what differs is written. If any "
        "entry is invalid, nothing is written and every problem is listed."
    )

    def add_arguments(self, parser):
        parser.add_argument("workspace", help="The workspace's slug.")
        parser.add_argument("file", help="The file (or directory) to import.")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; write nothing.")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Also delete the workspace's triggers and flows that FILE does not list: every one, or, "
            "when FILE was exported with --path-prefix P (it says path_prefix: P), only those whose path "
            "starts with P.",
        )

    def handle(self, *args, workspace, file, dry_run=False, prune=False, **options):
        found = selectors.workspace_by_slug(workspace)
        if found is None:
            raise CommandError(f"no workspace '{workspace}'")
        try:
            result = triggerfiles.import_path(workspace=found, path=file, dry_run=dry_run, prune=prune)
        except triggerfiles.TriggerFileError as exc:
            raise CommandError(
                f"nothing imported: {len(exc.errors)} problem(s) in {file}\n" + "\n".join(f"  {e}" for e in exc.errors)
            ) from exc
        for change in result.changes:
            self.stdout.write(str(change))
        self.stdout.write(result.summary())
