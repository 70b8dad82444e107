"""Telephony pages under /p/<project>/calls/."""

app_name = "telephony"
urlpatterns: list = []
