"""Triggers as code: a workspace's WebSocket triggers and flows as one YAML or JSON
document (`exporttriggers`), and that document, or Windmill's trigger files, back into
a workspace (`importtriggers`).

The document (the trigger JSON's and the flow JSON's configuration fields, no status):

    version: 1
    path_prefix: f/feeds/      # only when exported with --path-prefix: --prune stays inside it
    flows:                     # imported before the triggers, which may run them
    - {path, preprocessor_path, steps, early_return}
    websocket_triggers:
    - {path, url, url_runnable_args, script_path, is_flow, mode, filters, ...}

Also read, as they are: one trigger (a Windmill `<path>.websocket_trigger.yaml` as
`wmill sync` writes it, whose path is its file name, or the trigger JSON of the API or
of Windmill's), a list of triggers, and a directory holding `*.websocket_trigger.yaml`
files (a `wmill sync` tree).

- exporting: export_document / render: the workspace -> a document -> text, in a fixed
  order, so the same configuration always gives the same bytes;
- reading: read_path / parse / read_document: a file -> the entries to import, with the
  problems found in them (a file that can't be read or parsed raises TriggerFileError);
- importing: import_document: the entries into a workspace in one transaction, writing
  only what differs; if reading or validation found any problem, nothing is written
  and TriggerFileError lists them all;
- document: the document's keys and entries, and the configuration as it holds it.
"""

from orvanta_triggers.triggerfiles.document import TriggerFileError
from orvanta_triggers.triggerfiles.exporting import FORMATS, export_document, export_text, render
from orvanta_triggers.triggerfiles.importing import import_document, import_path
from orvanta_triggers.triggerfiles.reading import parse, read_document, read_path

__all__ = [
    "FORMATS",
    "TriggerFileError",
    "export_document",
    "export_text",
    "import_document",
    "import_path",
    "parse",
    "read_document",
    "read_path",
    "render",
]
