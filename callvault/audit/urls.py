"""Audit pages under /p/<project>/audit/."""

from django.urls import path

from callvault.audit import views

app_name = "audit"
urlpatterns = [
    path("", views.search_page, name="search"),
    path("export.csv", views.export_csv, name="export"),
    path("timeline/<int:user_id>/", views.timeline, name="timeline"),
]
