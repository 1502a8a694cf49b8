from django.urls import path

from orvanta_triggers import consumers

websocket_urlpatterns = [
    path("ws/demo/", consumers.DemoFeedConsumer.as_asgi()),
]
