"""The immutable snapshot of a trigger that a connection works from. Built once per
configuration version, so the per-frame path never touches the database."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from orvanta_triggers import filters, wire


@dataclass(frozen=True)
class TriggerSpec:
    id: int
    path: str
    workspace_id: int
    workspace_slug: str
    url: str
    url_runnable_args: dict
    filters: list
    filter_logic: str
    initial_messages: list
    heartbeat: dict | None
    # {name: dotted path} of values kept from incoming JSON frames.
    capture: dict
    resume: dict | None
    # resume["refused_when"], compiled (always False without a resume).
    resume_refused: Callable
    headers: dict
    subprotocols: list
    edited_at: datetime
    job_spec: dict
    # The filters, compiled: (text or None, parsed JSON or None) -> bool.
    matches: Callable
    # Whether text frames are parsed as JSON: for filters, captures, state or a resume's refusal.
    needs_json: bool

    def connection_config(self):
        """What the connection itself is made of: a change to any of it needs a new
        connection; any other change (filters, what runs and how, the mode) applies
        to the next frame of the open one."""
        return (
            self.path,
            self.workspace_id,
            self.url,
            self.url_runnable_args,
            self.initial_messages,
            self.heartbeat,
            self.capture,
            self.resume,
            self.headers,
            self.subprotocols,
        )

    @classmethod
    def from_trigger(cls, trigger):
        return cls(
            id=trigger.id,
            path=trigger.path,
            workspace_id=trigger.workspace_id,
            workspace_slug=trigger.workspace.slug,
            url=trigger.url,
            url_runnable_args=trigger.url_runnable_args or {},
            filters=trigger.filters or [],
            filter_logic=trigger.filter_logic,
            initial_messages=trigger.initial_messages or [],
            heartbeat=trigger.heartbeat,
            capture=trigger.capture or {},
            resume=trigger.resume,
            resume_refused=(
                filters.compile_filters([trigger.resume["refused_when"]])
                if trigger.resume
                else lambda text, parsed: False
            ),
            headers=trigger.headers or {},
            subprotocols=trigger.subprotocols or [],
            edited_at=trigger.edited_at,
            job_spec=wire.job_spec(trigger),
            matches=filters.compile_filters(trigger.filters or [], trigger.filter_logic),
            needs_json=(
                filters.needs_json(trigger.filters or [])
                or bool(trigger.capture)
                or bool((trigger.heartbeat or {}).get("state_field"))
                or bool(trigger.resume and filters.needs_json([trigger.resume["refused_when"]]))
            ),
        )
