"""Monitoring pages under /p/<project>/monitoring/."""

app_name = "monitoring"
urlpatterns: list = []
