"""Leak-control pages under /p/<project>/guard/."""

from callvault.guard import alert_views, export_views, quota_views

app_name = "guard"
urlpatterns = [
    *quota_views.urlpatterns,
    *export_views.urlpatterns,
    *alert_views.urlpatterns,
]
