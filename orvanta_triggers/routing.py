from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.urls import path

from orvanta_triggers import consumers


def websocket_urlpatterns():
    """The WebSocket routes, read once at startup (config.asgi)."""
    patterns = [
        # Browsers only: session auth, and cross-site sockets refused.
        path(
            "ws/monitor/<slug:workspace>/",
            AllowedHostsOriginValidator(AuthMiddlewareStack(consumers.MonitorConsumer.as_asgi())),
        ),
    ]
    if settings.DEBUG:
        # The feed `make run` points its demo trigger at: for development only, since
        # anyone may connect (remote clients, the listener among them, send no Origin
        # and no login) and have what they send logged.
        patterns.append(path("ws/demo/", consumers.DemoFeedConsumer.as_asgi()))
    return patterns
