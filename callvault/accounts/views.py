"""Account pages: the project picker, the project's API keys and members, password change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from callvault.accounts import stepup
from callvault.accounts.actions import (
    OWNER_ONLY_CAPABILITIES,
    do_add_member,
    do_change_password,
    do_change_role,
    do_create_api_key,
    do_create_member,
    do_deactivate_member,
    do_reactivate_member,
    do_reset_password,
    do_revoke_api_key,
    do_set_capabilities,
    may_give_role,
    may_manage,
)
from callvault.accounts.forms import (
    ApiKeyForm,
    MemberAddExistingForm,
    MemberCapabilitiesForm,
    MemberCreateForm,
    MemberRoleForm,
    apply_field_errors,
    limit_roles,
)
from callvault.accounts.models import (
    CAPABILITIES,
    ApiKey,
    Membership,
    Project,
    Role,
    User,
    access_membership,
)
from callvault.accounts.passwords import generated_password, password_rules
from callvault.accounts.policy import policy_for
from callvault.lib.errors import FieldErrors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The member's projects; with only one, straight to work: the orders list for those who
    may see the base, their own orders (and the Next button) for operators and trainees."""
    projects = list(Project.objects.visible_to(request.user).order_by("name"))
    if len(projects) == 1:
        member = access_membership(request.user, projects[0].slug)
        target = "orders:list" if member.can_view_all_orders else "orders:mine"
        return redirect(target, project_slug=projects[0].slug)
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
            can_read_audit=form.cleaned_data["can_read_audit"],
        )
        form = ApiKeyForm()
    keys = ApiKey.objects.filter(project=member.project).select_related("created_by")
    response = render(
        request,
        "accounts/api_keys.html",
        {
            "member": member,
            "project": member.project,
            "settings_section": "api_keys",
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


def _member_manager(request: HttpRequest, project_slug: str) -> Membership:
    member = access_membership(request.user, project_slug)
    if not member.can_manage_members:
        raise Http404
    return member


def _project_member(manager: Membership, membership_id: int) -> Membership:
    """A membership of the manager's project (active or not); 404 for any other."""
    target = (
        Membership.objects.select_related("user", "project")
        .filter(project_id=manager.project_id, pk=membership_id)
        .first()
    )
    if target is None:
        raise Http404
    return target


def _no_store(response: HttpResponse) -> HttpResponse:
    # A generated password is on this page: no cache, proxy or back button may keep it.
    response["Cache-Control"] = "no-store"
    return response


def _render_members(
    request: HttpRequest,
    manager: Membership,
    *,
    create_form: MemberCreateForm | None = None,
    add_form: MemberAddExistingForm | None = None,
    created: Membership | None = None,
    password: str | None = None,
) -> HttpResponse:
    memberships = (
        Membership.objects.filter(project_id=manager.project_id)
        .select_related("user")
        .order_by("-is_active", "user__username")
    )
    rows = [
        (m, [label for name, label in CAPABILITIES.items() if getattr(m, name)])
        for m in memberships
    ]
    if create_form is None:
        create_form = MemberCreateForm()
    if add_form is None:
        add_form = MemberAddExistingForm()
    for form in (create_form, add_form):
        limit_roles(form, lambda role: may_give_role(manager, role))
    response = render(
        request,
        "accounts/members.html",
        {
            "member": manager,
            "project": manager.project,
            "settings_section": "members",
            "rows": rows,
            "create_form": create_form,
            "add_form": add_form,
            "created": created,
            "password": password,
        },
    )
    return _no_store(response) if password else response


@login_required
def members(request: HttpRequest, project_slug: str) -> HttpResponse:
    """List the members; create one, whose generated password is shown on this response only."""
    manager = _member_manager(request, project_slug)
    if request.method != "POST":
        return _render_members(request, manager)
    form = MemberCreateForm(request.POST)
    if form.is_valid():
        password = generated_password(policy_for(manager.project).password_min_length)
        try:
            created = do_create_member(
                manager.project,
                username=form.cleaned_data["username"],
                password=password,
                role=form.cleaned_data["role"],
                first_name=form.cleaned_data["first_name"],
                last_name=form.cleaned_data["last_name"],
                acting=manager,
            )
        except FieldErrors as exc:
            apply_field_errors(form, exc)
        else:
            return _render_members(request, manager, created=created, password=password)
    return _render_members(request, manager, create_form=form)


@login_required
@require_POST
def member_add(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Add someone who already has a login to this project."""
    manager = _member_manager(request, project_slug)
    form = MemberAddExistingForm(request.POST)
    if form.is_valid():
        user = User.objects.filter(username__iexact=form.cleaned_data["username"]).first()
        if user is None:
            form.add_error("username", _("There is no user with this username."))
        else:
            try:
                added = do_add_member(
                    manager.project, user, form.cleaned_data["role"], acting=manager
                )
            except FieldErrors as exc:
                apply_field_errors(form, exc, {"user": "username"})
            else:
                messages.success(request, _("%(user)s was added.") % {"user": user.username})
                return redirect("accounts:member", project_slug, added.pk)
    return _render_members(request, manager, add_form=form)


def _render_member(
    request: HttpRequest,
    manager: Membership,
    target: Membership,
    *,
    role_form: MemberRoleForm | None = None,
    capabilities_form: MemberCapabilitiesForm | None = None,
    error: str = "",
    password: str | None = None,
) -> HttpResponse:
    if capabilities_form is None:
        capabilities_form = MemberCapabilitiesForm(initial=target.capabilities())
    if role_form is None:
        role_form = MemberRoleForm(initial={"role": target.role})
    limit_roles(role_form, lambda role: may_give_role(manager, role))
    if manager.role != Role.OWNER:
        # Shown but not offered: the action refuses these for non-owners anyway.
        for name in OWNER_ONLY_CAPABILITIES:
            capabilities_form.fields[name].widget.attrs["disabled"] = True
    response = render(
        request,
        "accounts/members_detail.html",
        {
            "member": manager,
            "project": manager.project,
            "settings_section": "members",
            "target": target,
            "may_manage": may_manage(manager, target),
            "is_self": manager.pk == target.pk,
            "role_form": role_form,
            "capabilities_form": capabilities_form,
            "error": error,
            "password": password,
        },
    )
    return _no_store(response) if password else response


@login_required
def member(request: HttpRequest, project_slug: str, membership_id: int) -> HttpResponse:
    """One member: role, capabilities, access and password."""
    manager = _member_manager(request, project_slug)
    return _render_member(request, manager, _project_member(manager, membership_id))


def _first_error(exc: FieldErrors) -> str:
    return next(iter(exc.errors.values()), "")


@login_required
@require_POST
def member_role(request: HttpRequest, project_slug: str, membership_id: int) -> HttpResponse:
    """Give the member another role; their capabilities are reset to its preset."""
    manager = _member_manager(request, project_slug)
    target = _project_member(manager, membership_id)
    form = MemberRoleForm(request.POST)
    if form.is_valid():
        try:
            do_change_role(target, form.cleaned_data["role"], acting=manager)
        except FieldErrors as exc:
            target.refresh_from_db()
            apply_field_errors(form, exc)
        else:
            messages.success(request, _("The role was changed."))
            return redirect("accounts:member", project_slug, target.pk)
    return _render_member(request, manager, target, role_form=form)


@login_required
@require_POST
def member_capabilities(
    request: HttpRequest, project_slug: str, membership_id: int
) -> HttpResponse:
    """Switch the member's individual capability flags."""
    manager = _member_manager(request, project_slug)
    target = _project_member(manager, membership_id)
    form = MemberCapabilitiesForm(request.POST)
    if form.is_valid():
        try:
            do_set_capabilities(target, form.cleaned_data, acting=manager)
        except FieldErrors as exc:
            target.refresh_from_db()
            apply_field_errors(form, exc)
        else:
            messages.success(request, _("The capabilities were changed."))
            return redirect("accounts:member", project_slug, target.pk)
    return _render_member(request, manager, target, capabilities_form=form)


def _member_step(
    request: HttpRequest,
    project_slug: str,
    membership_id: int,
    step: Callable[..., Membership],
    done: str,
) -> HttpResponse:
    manager = _member_manager(request, project_slug)
    target = _project_member(manager, membership_id)
    try:
        step(target, acting=manager)
    except FieldErrors as exc:
        target.refresh_from_db()
        return _render_member(request, manager, target, error=_first_error(exc))
    messages.success(request, done)
    return redirect("accounts:member", project_slug, target.pk)


@login_required
@require_POST
def member_deactivate(request: HttpRequest, project_slug: str, membership_id: int) -> HttpResponse:
    """Take the member out of the project (their record stays)."""
    return _member_step(
        request, project_slug, membership_id, do_deactivate_member, _("The member was deactivated.")
    )


@login_required
@require_POST
def member_reactivate(request: HttpRequest, project_slug: str, membership_id: int) -> HttpResponse:
    """Let a deactivated member back in."""
    return _member_step(
        request, project_slug, membership_id, do_reactivate_member, _("The member was reactivated.")
    )


@login_required
@require_POST
def member_reset_password(
    request: HttpRequest, project_slug: str, membership_id: int
) -> HttpResponse:
    """A new generated password, shown on this response only; the member must change it."""
    manager = _member_manager(request, project_slug)
    target = _project_member(manager, membership_id)
    password = generated_password(password_rules(target.user).min_length)
    try:
        do_reset_password(target, password, acting=manager)
    except FieldErrors as exc:
        return _render_member(request, manager, target, error=_first_error(exc))
    return _render_member(request, manager, target, password=password)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change page, with the change made by do_change_password (audited,
    and it lifts the must-change-password requirement). A wrong current password counts
    like a wrong step-up password: a borrowed session cannot guess it without limit."""

    def form_invalid(self, form: Any) -> HttpResponse:
        if form.has_error("old_password"):
            from callvault.accounts import twofactor

            if twofactor.record_failure(self.request, form.user, "password_change", step_up=True):
                return twofactor.end_locked_session(self.request)
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        try:
            do_change_password(form.user, form.cleaned_data["new_password1"])
        except FieldErrors as exc:
            apply_field_errors(form, exc, {"password": "new_password1"})
            return self.form_invalid(form)
        update_session_auth_hash(self.request, form.user)
        # The current password was just proved: enrolling a first factor next (a person
        # without one changes a password someone else chose first) needs no second prompt.
        stepup.mark(self.request)
        return HttpResponseRedirect(self.get_success_url())
