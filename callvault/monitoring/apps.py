"""App config for monitoring: the server side of callvault-agent."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Enrolment, devices, activity spans, screenshots, timelines and retention."""

    name = "callvault.monitoring"
    label = "monitoring"
