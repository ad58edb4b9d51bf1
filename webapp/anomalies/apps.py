from django.apps import AppConfig


class AnomaliesConfig(AppConfig):
    name = "webapp.anomalies"
    label = "anomalies"
    verbose_name = "Anomaly detection"
