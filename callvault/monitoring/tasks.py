"""Background tasks of monitoring (run by `callvault worker` among the periodic tasks):
the "agent offline while working" check and the retention of screenshots and spans."""

from __future__ import annotations

from django_tasks import task

from callvault.monitoring.models import MonitoringPolicy
from callvault.monitoring.screenshots import purge_project, purge_spans
from callvault.monitoring.silence import check_silent_agents


@task()
def check_agent_silence() -> int:
    """Raise "agent offline while working" for silent devices of working members; how many."""
    return check_silent_agents()


@task()
def purge_old_screenshots() -> int:
    """Delete screenshots (files and rows) and activity spans older than each project's
    retention; how many of both. One screenshot.purge and one activity_span.purge event per
    project that lost any."""
    deleted = 0
    for policy in MonitoringPolicy.objects.select_related("project").order_by("project_id"):
        deleted += purge_project(policy) + purge_spans(policy)
    return deleted
