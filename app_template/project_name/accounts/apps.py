from django.apps import AppConfig


class AccountsConfig(AppConfig):
    # Derived from the module path so the package can be renamed freely.
    name = __name__.rpartition(".")[0]
    label = "accounts"
