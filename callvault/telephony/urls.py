"""Telephony pages under /p/<project>/calls/."""

from django.urls import URLPattern

from callvault.telephony import recording_views, views

app_name = "telephony"
urlpatterns: list[URLPattern] = [
    *views.urlpatterns,
    *recording_views.urlpatterns,
]
