from django.apps import AppConfig


class ListenerConfig(AppConfig):
    """The listener (`manage.py runlisteners`), an app of its own above orvanta_triggers:
    it imports the app's core, never the other way round."""

    name = "listener"
    label = "orvanta_listener"
    verbose_name = "Orvanta listener"
