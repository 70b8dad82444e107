"""Endpoints the PBX calls under /pbx/v1/ (authenticated by the PBX's shared secret)."""

app_name = "pbx"
urlpatterns: list = []
