"""App config for accounts."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    """Users, projects, memberships, roles and API keys."""

    name = "callvault.accounts"
    label = "accounts"

    def ready(self) -> None:
        from django.contrib.auth import signals as auth_signals

        from callvault.accounts import signals

        auth_signals.user_logged_in.connect(signals.on_user_logged_in, dispatch_uid="cv.login")
        auth_signals.user_logged_out.connect(signals.on_user_logged_out, dispatch_uid="cv.logout")
        auth_signals.user_login_failed.connect(
            signals.on_user_login_failed, dispatch_uid="cv.login_failed"
        )

        from callvault.accounts.models import CAPABILITIES
        from callvault.audit.labels import register_actions, register_fields

        register_actions(AUDIT_ACTIONS)
        # Who may enter: each module connects its own receivers on import and names its
        # audit actions in its AUDIT_ACTIONS.
        from callvault.accounts import allowlist, lockout, sessions, support, twofactor

        for module in (allowlist, lockout, sessions, support, twofactor):
            register_actions(getattr(module, "AUDIT_ACTIONS", {}))
        register_actions(SECURITY_POLICY_ACTIONS)
        register_fields("membership", {**CAPABILITIES, **MEMBERSHIP_FIELDS})


# What the audit viewers call this app's actions and a membership's fields.
AUDIT_ACTIONS = {
    "auth.login": _("Logged in"),
    "auth.logout": _("Logged out"),
    "auth.login_failed": _("Login failed"),
    "user.create": _("User created"),
    "user.password_change": _("Password changed"),
    "user.password_reset": _("Password reset"),
    "user.password_rehash": _("Password re-hashed"),
    "project.create": _("Project created"),
    "project.update": _("Project settings changed"),
    "member.add": _("Member added"),
    "member.role": _("Role changed"),
    "member.capabilities": _("Capabilities changed"),
    "member.deactivate": _("Member deactivated"),
    "member.reactivate": _("Member reactivated"),
    "api_key.create": _("API key created"),
    "api_key.revoke": _("API key revoked"),
    "api_key.refused": _("API key refused"),
}
SECURITY_POLICY_ACTIONS = {
    "security_policy.create": _("Security policy created"),
    "security_policy.update": _("Security policy changed"),
    "role_policy.create": _("Role policy created"),
    "role_policy.update": _("Role policy changed"),
}
MEMBERSHIP_FIELDS = {"role": _("Role"), "is_active": _("Active")}
