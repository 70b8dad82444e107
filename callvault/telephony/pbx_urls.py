"""Endpoints the PBX calls under /pbx/v1/ (authenticated by the PBX's shared secret)."""

from django.urls import path

from callvault.telephony import pbx_views, recording_views

app_name = "pbx"
urlpatterns = [
    path("resolve", pbx_views.resolve, name="resolve"),
    path("events", pbx_views.events, name="events"),
    path("inbound", pbx_views.inbound, name="inbound"),
    *recording_views.pbx_urlpatterns,
]
