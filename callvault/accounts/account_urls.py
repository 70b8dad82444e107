"""A person's own account pages under /accounts/: second factor, sessions, support links."""

from callvault.accounts import sessions_views, support_views, twofactor_views

app_name = "account"
urlpatterns = [
    *twofactor_views.account_urlpatterns,
    *sessions_views.account_urlpatterns,
    *support_views.account_urlpatterns,
]
