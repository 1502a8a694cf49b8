"""The document: its keys and version, the entries reading finds in it, and a
trigger's or flow's configuration as the document holds it (in one key order).
"""

from dataclasses import dataclass, field

from orvanta_triggers import services

FORMAT_VERSION = 1
DOCUMENT_KEYS = ("version", "path_prefix", "flows", "websocket_triggers")
TRIGGER_FIELDS = services.TRIGGER_CONFIG_FIELDS
FLOW_FIELDS = services.FLOW_FIELDS


class TriggerFileError(Exception):
    """The file can't be imported; `errors` lists every problem found, one line each."""

    def __init__(self, errors):
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class Entry:
    """One flow or trigger to import: its path and configuration (path excluded)."""

    kind: str  # "flow" or "trigger"
    path: str
    fields: dict
    where: str  # how error messages name it
    # What reading found wrong, "field: message" each. The fields named are left out of
    # `fields`, and their validation messages are not repeated.
    problems: tuple = ()
    problem_fields: frozenset = frozenset()


@dataclass
class TriggerDocument:
    flows: list = field(default_factory=list)
    triggers: list = field(default_factory=list)
    # --prune deletes only objects whose path starts with this ("" = the whole workspace).
    path_prefix: str = ""
    # Problems of the file itself, and of entries that can't be imported at all (no path).
    errors: list = field(default_factory=list)

    def problems(self):
        """Every problem reading found: the file's, then each entry's."""
        entries = [*self.flows, *self.triggers]
        return [*self.errors, *(f"{entry.where}: {problem}" for entry in entries for problem in entry.problems)]


# Keys that name an object (a step's id, a filter's key, a transform's type) come first,
# in this order; the rest are sorted.
LEADING_KEYS = ("id", "path", "key", "type", "script_path")


def _key_order(key):
    return (LEADING_KEYS.index(key) if key in LEADING_KEYS else len(LEADING_KEYS), key)


def _canonical(value):
    """`value` with the keys of every JSON object in it in a fixed order: PostgreSQL's
    jsonb keeps no key order, so a fixed one is what every database gives back alike."""
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value, key=_key_order)}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def trigger_config(trigger):
    """The trigger's configuration, as the document holds it."""
    return {name: _canonical(getattr(trigger, name)) for name in TRIGGER_FIELDS}


def flow_config(flow):
    return {name: _canonical(getattr(flow, name)) for name in FLOW_FIELDS}
