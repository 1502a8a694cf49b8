"""Test a connection the way the listener would make it: resolve the URL (a URL
runnable runs on a worker, for at most ORVANTA_TEST_CONNECTION_TIMEOUT_SECS), check
it, connect, upgrade, and close. Nothing is sent."""

import logging
import threading

import websocket

from orvanta_triggers import conf, netguard, triggerfields
from orvanta_triggers.client.connect import ConnectFailed, open_websocket, resolve_url
from orvanta_triggers.client.runnable_calls import RunnableClient
from orvanta_triggers.models import Job

logger = logging.getLogger(__name__)


def probe_connection(*, celery_app, workspace_id, url, url_runnable_args=None, headers=None, subprotocols=None):
    """{"ok": bool, "error": str | None, "subprotocol": str | None}."""
    problems = triggerfields.url_errors(url, workspace_id, url_runnable_args or {})
    problems.update(triggerfields.headers_errors(headers or {}))
    problems.update(triggerfields.subprotocols_errors(subprotocols or []))
    if problems:
        return {
            "ok": False,
            "error": "; ".join(f"{k}: {' '.join(v)}" for k, v in problems.items()),
            "subprotocol": None,
        }
    try:
        resolved = resolve_url(
            url,
            url_runnable_args=url_runnable_args or {},
            workspace_id=workspace_id,
            runnables=RunnableClient(celery_app=celery_app, timeout_secs=conf.test_connection_timeout_secs()),
            cancelled=threading.Event(),
            kind=Job.Kind.TEST_CONNECTION,
        )
        ws = open_websocket(resolved, headers=headers or {}, subprotocols=subprotocols or [])
    except ConnectFailed as exc:
        return {"ok": False, "error": exc.reason, "subprotocol": None}
    subprotocol = ws.getsubprotocol()
    try:
        ws.close(websocket.STATUS_NORMAL, timeout=2)
    except Exception as exc:
        logger.info("test connection to %s: close failed: %s", netguard.redact_url(resolved), exc)
    return {"ok": True, "error": None, "subprotocol": subprotocol}
