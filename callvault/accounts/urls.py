"""Project settings pages under /p/<project>/settings/."""

from django.urls import path

from callvault.accounts import (
    allowlist_views,
    lockout_views,
    sessions_views,
    support_views,
    views,
)

app_name = "accounts"
urlpatterns = [
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("members/", views.members, name="members"),
    path("members/add/", views.member_add, name="member_add"),
    path("members/<int:membership_id>/", views.member, name="member"),
    path("members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path(
        "members/<int:membership_id>/capabilities/",
        views.member_capabilities,
        name="member_capabilities",
    ),
    path(
        "members/<int:membership_id>/deactivate/",
        views.member_deactivate,
        name="member_deactivate",
    ),
    path(
        "members/<int:membership_id>/reactivate/",
        views.member_reactivate,
        name="member_reactivate",
    ),
    path(
        "members/<int:membership_id>/password/",
        views.member_reset_password,
        name="member_reset_password",
    ),
    *lockout_views.project_urlpatterns,
    *allowlist_views.project_urlpatterns,
    *sessions_views.project_urlpatterns,
    *support_views.project_urlpatterns,
]
