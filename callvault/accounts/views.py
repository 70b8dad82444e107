"""Account pages: the project picker and the project's API keys."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from callvault.accounts.actions import do_create_api_key, do_revoke_api_key
from callvault.accounts.forms import ApiKeyForm
from callvault.accounts.models import ApiKey, Membership, Project, access_membership


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The member's projects; with only one, straight to its orders."""
    projects = list(Project.objects.visible_to(request.user).order_by("name"))
    if len(projects) == 1:
        return redirect("orders:list", project_slug=projects[0].slug)
    return render(request, "accounts/home.html", {"projects": projects})


def _key_manager(request: HttpRequest, project_slug: str) -> Membership:
    member = access_membership(request.user, project_slug)
    if not member.can_manage_api_keys:
        # Members who may not manage keys are not told the page exists.
        raise Http404
    return member


@login_required
def api_keys(request: HttpRequest, project_slug: str) -> HttpResponse:
    """List the project's keys; create one (its secret is shown on this response only)."""
    member = _key_manager(request, project_slug)
    form = ApiKeyForm(request.POST or None)
    secret = None
    if request.method == "POST" and form.is_valid():
        _, secret = do_create_api_key(
            member.project,
            form.cleaned_data["name"],
            created_by=member.user,
            can_create_leads=form.cleaned_data["can_create_leads"],
            can_read_orders=form.cleaned_data["can_read_orders"],
            can_update_orders=form.cleaned_data["can_update_orders"],
        )
        form = ApiKeyForm()
    keys = ApiKey.objects.filter(project=member.project).select_related("created_by")
    response = render(
        request,
        "accounts/api_keys.html",
        {
            "member": member,
            "project": member.project,
            "form": form,
            "secret": secret,
            "keys": keys.order_by("revoked_at", "-created_at"),
        },
    )
    if secret:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, project_slug: str, key_id: int) -> HttpResponse:
    """Revoke a key of this project."""
    member = _key_manager(request, project_slug)
    key = ApiKey.objects.filter(project=member.project, pk=key_id).first()
    if key is None:
        raise Http404
    do_revoke_api_key(key)
    return redirect("accounts:api_keys", project_slug=project_slug)
