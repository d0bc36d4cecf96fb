from django.apps import AppConfig


class HealthConfig(AppConfig):
    # Derived from the module path so the package can be renamed freely.
    name = __name__.rpartition(".")[0]
    label = "health"
