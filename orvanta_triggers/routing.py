from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from orvanta_triggers import consumers

websocket_urlpatterns = [
    # Remote clients (the listener among them) send no Origin: the feed accepts them.
    path("ws/demo/", consumers.DemoFeedConsumer.as_asgi()),
    # Browsers only: session auth, and cross-site sockets refused.
    path(
        "ws/monitor/<slug:workspace>/",
        AllowedHostsOriginValidator(AuthMiddlewareStack(consumers.MonitorConsumer.as_asgi())),
    ),
]
