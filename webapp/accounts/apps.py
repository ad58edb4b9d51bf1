from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "webapp.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from webapp.accounts import signals

        signals.connect(self)
