from django.apps import AppConfig


class OrvantaTriggersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "orvanta_triggers"
    verbose_name = "Orvanta triggers"

    def ready(self):
        # Connects the Celery worker signals (imported for that effect only).
        from orvanta_triggers import workersignals  # noqa: F401
