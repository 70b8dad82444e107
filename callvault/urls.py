"""Top-level URLs: pages, the API and its docs, health."""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from callvault.accounts.views import PasswordChangeView, home
from callvault.api import api


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers: answers without touching the database."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("", home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/", include("callvault.accounts.account_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("p/<slug:project_slug>/orders/", include("callvault.orders.urls")),
    path("p/<slug:project_slug>/settings/", include("callvault.accounts.urls")),
    path("p/<slug:project_slug>/setup/", include("callvault.orders.setup_urls")),
    path("p/<slug:project_slug>/audit/", include("callvault.audit.urls")),
    path("p/<slug:project_slug>/guard/", include("callvault.guard.urls")),
    path("p/<slug:project_slug>/calls/", include("callvault.telephony.urls")),
    path("p/<slug:project_slug>/monitoring/", include("callvault.monitoring.urls")),
    path("pbx/v1/", include("callvault.telephony.pbx_urls")),
    path("agent/v1/", include("callvault.monitoring.agent_urls")),
    path("api/v1/", api.urls),
    path("healthz", healthz, name="healthz"),
]
