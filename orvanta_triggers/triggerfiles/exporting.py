"""Export: the workspace -> a document -> text, in a fixed order (entries by path,
fields in the trigger JSON's order, the keys of JSON objects in one order too), so the
same configuration always gives the same bytes, on SQLite and PostgreSQL alike.
"""

import json
import re

import yaml

from orvanta_triggers import selectors
from orvanta_triggers.triggerfiles.document import FORMAT_VERSION, flow_config, trigger_config

FORMATS = ("yaml", "json")
# Not written by exporttriggers: `enabled` is `mode`'s older alias (still read).
NOT_EXPORTED = ("enabled",)
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
YAML_HEADER = (
    "# Orvanta WebSocket triggers and flows (python manage.py importtriggers WORKSPACE FILE).\n"
    "# Holds secrets as stored (headers, initial messages, runnable args): keep it private.\n"
)


def flows_run_by(config):
    """Paths of the flows a trigger configuration runs: as its runnable, for its URL or
    for an initial message."""
    paths = set()
    if config.get("is_flow") and isinstance(config.get("script_path"), str):
        paths.add(config["script_path"])
    url = config.get("url")
    if isinstance(url, str) and url.startswith("$flow:"):
        paths.add(url.removeprefix("$flow:"))
    for message in config.get("initial_messages") or []:
        runnable = message.get("runnable_result") if isinstance(message, dict) else None
        if isinstance(runnable, dict) and runnable.get("is_flow") and isinstance(runnable.get("path"), str):
            paths.add(runnable["path"])
    return paths


def export_document(*, workspace, path_prefix=None):
    """The workspace's triggers (those whose path starts with `path_prefix`, if given)
    and flows (those under the prefix, and every flow an exported trigger runs)."""
    prefix = path_prefix or ""
    # Filtered again here: SQLite's LIKE (behind startswith) ignores case.
    triggers = [
        {name: value for name, value in trigger_config(t).items() if name not in NOT_EXPORTED}
        for t in selectors.workspace_triggers(workspace=workspace, path_start=prefix or None)
        if t.path.startswith(prefix)
    ]
    run = set().union(*(flows_run_by(config) for config in triggers))
    flows = [
        flow_config(f)
        for f in selectors.workspace_flows(workspace=workspace)
        if f.path.startswith(prefix) or f.path in run
    ]
    document = {"version": FORMAT_VERSION}
    if prefix:
        document["path_prefix"] = prefix
    # Sorted here, not by the database, whose collation may order paths otherwise.
    document["flows"] = sorted(flows, key=lambda config: config["path"])
    document["websocket_triggers"] = sorted(triggers, key=lambda config: config["path"])
    return document


def render(document, fmt="yaml"):
    if fmt == "json":
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
        # A lone surrogate (a frame's, a filter's) can't be written as UTF-8: escaped.
        return LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text) + "\n"
    if fmt != "yaml":
        raise ValueError(f"unknown format '{fmt}': use {' or '.join(FORMATS)}")
    return YAML_HEADER + yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1_000_000
    )


def export_text(*, workspace, path_prefix=None, fmt="yaml"):
    return render(export_document(workspace=workspace, path_prefix=path_prefix), fmt)
