from django.apps import AppConfig


class OrvantaTriggersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "orvanta_triggers"
    verbose_name = "Orvanta triggers"
