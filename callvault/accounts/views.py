"""Account pages: the project picker after login."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from callvault.accounts.models import Project


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The member's projects; with only one, straight to its orders."""
    projects = list(Project.objects.visible_to(request.user).order_by("name"))
    if len(projects) == 1:
        return redirect("orders:list", project_slug=projects[0].slug)
    return render(request, "accounts/home.html", {"projects": projects})
