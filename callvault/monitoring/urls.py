"""Monitoring pages under /p/<project>/monitoring/."""

from django.urls import path

from callvault.monitoring import views

app_name = "monitoring"
urlpatterns = [
    path("", views.devices, name="devices"),
    path("codes/", views.code_create, name="code_create"),
    path("devices/<int:device_id>/revoke/", views.device_revoke, name="device_revoke"),
    path("policy/", views.policy, name="policy"),
    path("timeline/<int:user_id>/", views.timeline, name="timeline"),
    path("screenshots/<int:screenshot_id>/", views.screenshot, name="screenshot"),
    path("screenshots/<int:screenshot_id>/thumb/", views.screenshot_thumb, name="screenshot_thumb"),
    path("me/", views.mine, name="mine"),
]
