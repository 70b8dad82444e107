"""The agent's API under /agent/v1/ (authenticated by the device token)."""

from django.urls import path

from callvault.monitoring import agent_views

app_name = "agent"
urlpatterns = [
    path("enrol", agent_views.enrol, name="enrol"),
    path("policy", agent_views.policy, name="policy"),
    path("heartbeats", agent_views.heartbeats, name="heartbeats"),
    path("screenshots", agent_views.screenshots, name="screenshots"),
]
