"""Project setup pages (statuses, products, calling hours and queue rules, the sales script)
for members who may manage the project. Each change goes through orders.setup_actions."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from callvault.accounts.forms import apply_field_errors
from callvault.accounts.models import Membership, Role, access_membership
from callvault.audit.models import AuditRetention
from callvault.audit.retention import do_set_audit_retention
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import do_create_product
from callvault.orders.models import Product, Status, WorkSettings
from callvault.orders.queue import work_settings
from callvault.orders.setup_actions import (
    do_create_status,
    do_update_product,
    do_update_status,
    do_update_work_settings,
)
from callvault.orders.setup_forms import (
    AuditRetentionForm,
    ProductCreateForm,
    ProductForm,
    ScriptForm,
    StatusCreateForm,
    StatusForm,
    WorkSettingsForm,
)


def _project_manager(request: HttpRequest, project_slug: str) -> Membership:
    member = access_membership(request.user, project_slug)
    if not member.can_manage_project:
        raise Http404  # not told the page exists
    return member


def _page(
    request: HttpRequest, member: Membership, template: str, section: str, **context: Any
) -> HttpResponse:
    return render(
        request,
        f"setup/{template}",
        {"member": member, "project": member.project, "settings_section": section, **context},
    )


@login_required
def statuses(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's statuses in order; create one."""
    member = _project_manager(request, project_slug)
    form = StatusCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            status = do_create_status(member.project, **form.cleaned_data)
        except FieldErrors as exc:
            apply_field_errors(form, exc)
        else:
            messages.success(request, _("Status “%(name)s” was created.") % {"name": status.name})
            return redirect("setup:statuses", project_slug)
    return _page(
        request,
        member,
        "statuses.html",
        "statuses",
        statuses=Status.objects.filter(project_id=member.project_id).order_by("position", "id"),
        form=form,
    )


@login_required
def status_edit(request: HttpRequest, project_slug: str, status_id: int) -> HttpResponse:
    """Edit one status of this project."""
    member = _project_manager(request, project_slug)
    status = Status.objects.filter(project_id=member.project_id, pk=status_id).first()
    if status is None:
        raise Http404
    initial = {
        name: getattr(status, name)
        for name in ("name", "group", "queue_class", "requires_reason", "position", "is_active")
    }
    form = StatusForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            do_update_status(status, **form.cleaned_data)
        except FieldErrors as exc:
            apply_field_errors(form, exc)
        else:
            messages.success(request, _("Status “%(name)s” was saved.") % {"name": status.name})
            return redirect("setup:statuses", project_slug)
    return _page(request, member, "status_edit.html", "statuses", status=status, form=form)


@login_required
def products(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's products; create one."""
    member = _project_manager(request, project_slug)
    form = ProductCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            product = do_create_product(member.project, **form.cleaned_data)
        except FieldErrors as exc:
            apply_field_errors(form, exc)
        else:
            messages.success(request, _("Product “%(name)s” was created.") % {"name": product.name})
            return redirect("setup:products", project_slug)
    return _page(
        request,
        member,
        "products.html",
        "products",
        products=Product.objects.filter(project_id=member.project_id).order_by(
            "-is_active", "name"
        ),
        form=form,
    )


@login_required
def product_edit(request: HttpRequest, project_slug: str, product_id: int) -> HttpResponse:
    """Edit one product of this project."""
    member = _project_manager(request, project_slug)
    product = Product.objects.filter(project_id=member.project_id, pk=product_id).first()
    if product is None:
        raise Http404
    initial = {name: getattr(product, name) for name in ("name", "price", "is_upsell", "is_active")}
    form = ProductForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            do_update_product(product, **form.cleaned_data)
        except FieldErrors as exc:
            apply_field_errors(form, exc)
        else:
            messages.success(request, _("Product “%(name)s” was saved.") % {"name": product.name})
            return redirect("setup:products", project_slug)
    return _page(request, member, "product_edit.html", "products", product=product, form=form)


def _work(member: Membership) -> WorkSettings:
    return work_settings(member.project_id)


@login_required
def work_rules(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Calling hours and queue rules."""
    member = _project_manager(request, project_slug)
    work = _work(member)
    form = WorkSettingsForm(request.POST or None, work=work)
    if request.method == "POST" and form.is_valid():
        try:
            do_update_work_settings(work, **form.values())
        except FieldErrors as exc:
            apply_field_errors(form, exc, {"queue_priority": "priority_1"})
        else:
            messages.success(request, _("The work rules were saved."))
            return redirect("setup:work", project_slug)
    return _page(request, member, "work.html", "work", form=form)


@login_required
def script(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The sales script operators read on the call."""
    member = _project_manager(request, project_slug)
    work = _work(member)
    form = ScriptForm(request.POST or None, initial={"script": work.script})
    if request.method == "POST" and form.is_valid():
        try:
            do_update_work_settings(work, script=form.cleaned_data["script"])
        except FieldErrors as exc:
            apply_field_errors(form, exc)
        else:
            messages.success(request, _("The sales script was saved."))
            return redirect("setup:script", project_slug)
    return _page(request, member, "script.html", "script", form=form)


@login_required
def audit_retention(request: HttpRequest, project_slug: str) -> HttpResponse:
    """How long the audit trail is kept: the owner's decision alone (it governs the record
    of what everyone else did)."""
    member = access_membership(request.user, project_slug)
    if member.role != Role.OWNER:
        raise Http404
    current = (
        AuditRetention.objects.filter(project_id=member.project_id)
        .values_list("keep_days", flat=True)
        .first()
    ) or 0
    form = AuditRetentionForm(request.POST or None, initial={"keep_days": current})
    if request.method == "POST" and form.is_valid():
        do_set_audit_retention(member.project_id, form.cleaned_data["keep_days"])
        messages.success(request, _("The audit retention was saved."))
        return redirect("setup:audit", project_slug)
    return _page(request, member, "audit.html", "audit", form=form)
