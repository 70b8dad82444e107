"""App config for monitoring: the server side of callvault-agent."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MonitoringConfig(AppConfig):
    """Enrolment, devices, activity spans, screenshots, timelines and retention."""

    name = "callvault.monitoring"
    label = "monitoring"

    def ready(self) -> None:
        from callvault.audit.labels import register_actions
        from callvault.monitoring import defaults  # noqa: F401 (connects its receiver)

        register_actions(AUDIT_ACTIONS)


# What the audit viewers call this app's actions (docs/audit-events.md, "Monitoring").
AUDIT_ACTIONS = {
    "monitoring_policy.create": _("Monitoring policy created"),
    "monitoring_policy.update": _("Monitoring policy changed"),
    "enrolment_code.create": _("Enrolment code created"),
    "enrolment_code.use": _("Enrolment code used"),
    "enrolment_code.refused": _("Enrolment refused"),
    "device.register": _("Device enrolled"),
    "device.revoke": _("Device revoked"),
    "device.refused": _("Device refused"),
    "timeline.view": _("Activity timeline viewed"),
    "screenshot.view": _("Screenshot viewed"),
    "screenshot.purge": _("Old screenshots deleted"),
    "activity_span.purge": _("Old activity deleted"),
}
