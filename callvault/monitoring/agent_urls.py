"""The agent's API under /agent/v1/ (authenticated by the device token)."""

app_name = "agent"
urlpatterns: list = []
