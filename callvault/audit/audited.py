"""The tables the bypass triggers watch, and how their rows map onto the application's events.

The triggers themselves: `callvault/audit/bypass.py` (PostgreSQL, and the entry points
migrations call) and `callvault/audit/parked.py` (SQLite). Which object a table's rows
belong to is what the application records as the event's object: items and comments are
recorded on their order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHANGED = "changed"
# The object type of vault.rotate's batch events: re-sealing claims sealed-only changes.
SEALED_COLUMN_OBJECT = "sealed_column"
RESEAL = "RESEAL"

# Dates and times as the database renders them: left as they are, since the phone pattern
# would blank them and they cannot carry a number.
DATE_OR_TIME = (
    r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d(:?\d\d)?|Z)?)?"
    r"|\d\d:\d\d(:\d\d(\.\d+)?)?"
)


@dataclass(frozen=True)
class AuditedTable:
    """A table the triggers watch and how its rows map onto the application's events."""

    table: str
    object_type: str
    # The column holding the project id the application files the event under ("" = none).
    project_column: str
    # The column holding the object id the application records (the row's, or its parent's).
    object_column: str = "id"
    # Secrets: recorded as "changed", never their value.
    sealed_columns: tuple[str, ...] = ()
    # Bookkeeping the application changes without an event on purpose: left out of diffs,
    # and a change to only these records nothing.
    ignored_columns: tuple[str, ...] = ()
    # "table.column" listing the object's other projects: events about it may be filed
    # under any of them or none (users).
    projects_from: str = ""
    # The object id of the vault.rotate event that re-seals this table's sealed column.
    resealed_by: str = ""
    # PostgreSQL: one update that the statement making it also records, attested as
    # described at bypass.ATTESTED_SETTING: (the columns it changes, the transition as a
    # condition on OLD and NEW). Such an update queues no deferred call.
    attested_update: tuple[tuple[str, ...], str] | None = None
    # `recorder.update_recorded` may hand this table's UPDATEs their events: on PostgreSQL
    # the UPDATE carries its event (bypass.RECORDED_UPDATE_KEY), on SQLite the event written
    # just before it is recognised (parked._recorded_update). Needs a project column, and
    # the row's update-time column (`update_stamp`), which the write sets to the event's time.
    recorded_updates: bool = False
    update_stamp: str = ""


# The mapping, read off the actions that write each table (orders/actions.py, queue.py,
# setup_actions.py, accounts/actions.py, accounts/signals.py, vault/rotation.py).
AUDITED_TABLES: tuple[AuditedTable, ...] = (
    AuditedTable(
        "orders_order",
        "order",
        "project_id",
        # Ciphertext, its blind index, and the mask (it shows the last digits).
        sealed_columns=("phone_sealed", "phone_index", "phone_mask"),
        # The hold (locked_by, locked_until): every card view renews it (queue.extend_hold),
        # it expires by itself within minutes, and the claim that sets it is the hottest
        # statement in the call center: watching it cost the claim its deferred trigger
        # (docs/benchmarks.md, queue claims). Who takes an order for good is assigned_to,
        # which is watched. queue_rank: a queue-order change re-ranks waiting orders
        # (actions.rank_statuses, recorded as the settings change); version/updated_at only
        # accompany recorded edits.
        ignored_columns=(
            "locked_by_id",
            "locked_until",
            "queue_rank",
            "version",
            "updated_at",
        ),
        resealed_by="orders.Order.phone_sealed",
        # Every edit of an order (orders/actions.py, _save_order) carries its event.
        recorded_updates=True,
        update_stamp="updated_at",
    ),
    # Items and comments are recorded as events of their order. (StatusChange is not
    # watched: it is a report's copy of the order.status events, and it is written after
    # them, which SQLite's claim-by-record_event cannot see.)
    AuditedTable("orders_orderitem", "order", "project_id", object_column="order_id"),
    AuditedTable("orders_comment", "order", "project_id", object_column="order_id"),
    AuditedTable("orders_status", "status", "project_id", ignored_columns=("queue_rank",)),
    AuditedTable("orders_product", "product", "project_id"),
    AuditedTable("orders_worksettings", "work_settings", "project_id"),
    # order_seq: every lead takes the next number (recorded as the order's creation).
    AuditedTable("accounts_project", "project", "id", ignored_columns=("order_seq",)),
    AuditedTable("accounts_membership", "membership", "project_id"),
    # last_used_at: refreshed at most once a minute by authenticate_api_key.
    AuditedTable(
        "accounts_apikey",
        "api_key",
        "project_id",
        sealed_columns=("secret_hash",),
        ignored_columns=("last_used_at",),
    ),
    # Who may enter (accounts/policy.py, allowlist.py, support.py, twofactor.py).
    AuditedTable("accounts_securitypolicy", "security_policy", "project_id"),
    AuditedTable("accounts_rolepolicy", "role_policy", "project_id"),
    AuditedTable("accounts_allowednetwork", "allowed_network", "project_id"),
    # link_token_hash: the one-time link's secret, as a hash; it is still a credential.
    AuditedTable(
        "accounts_supportgrant", "support_grant", "project_id", sealed_columns=("link_token_hash",)
    ),
    # Passkeys are events of their user; sign_count and last_used_at move on every login.
    AuditedTable(
        "accounts_webauthncredential",
        "user",
        "",
        object_column="user_id",
        sealed_columns=("credential_id", "public_key"),
        ignored_columns=("sign_count", "last_used_at"),
        projects_from="accounts_membership.user_id",
    ),
    # Leak controls (callvault/guard): settings, quotas, alert rules, suspensions.
    AuditedTable(
        "guard_guardsettings",
        "guard_settings",
        "project_id",
        # The webhook address may carry a chat bot's token in its path: a write outside the
        # application records that it changed, never the address.
        sealed_columns=("webhook_secret_sealed", "webhook_url"),
        resealed_by="guard.GuardSettings.webhook_secret_sealed",
    ),
    AuditedTable("guard_quotarule", "quota_rule", "project_id"),
    AuditedTable("guard_alertrule", "alert_rule", "project_id"),
    AuditedTable("guard_suspension", "suspension", "project_id"),
    # Telephony (callvault/telephony): settings, PBXs, SIP accounts, calls and their tokens.
    AuditedTable(
        "telephony_telephonysettings",
        "telephony_settings",
        "project_id",
        sealed_columns=("secret_sealed",),
        resealed_by="telephony.TelephonySettings.secret_sealed",
    ),
    # last_used_at: refreshed at most once a minute by the PBX endpoints' authentication.
    AuditedTable(
        "telephony_pbx",
        "pbx",
        "project_id",
        sealed_columns=("secret_hash",),
        ignored_columns=("last_used_at",),
    ),
    AuditedTable("telephony_sipaccount", "sip_account", "project_id", sealed_columns=("ha1",)),
    # The token lookup's one statement spends the token, moves the call from new to dialing
    # and records call.dial (telephony/actions.py, _SPEND_SQL): both updates are attested.
    AuditedTable(
        "telephony_call",
        "call",
        "project_id",
        attested_update=(("state",), "OLD.state = 'new' AND NEW.state = 'dialing'"),
    ),
    # A token is an event of its call (call.start issues it, call.dial spends it): a used_at
    # cleared outside the application, to dial a token twice, is caught here.
    AuditedTable(
        "telephony_calltoken",
        "call",
        "",
        object_column="call_id",
        sealed_columns=("token_hash",),
        projects_from="telephony_call.id",
        attested_update=(("used_at",), "OLD.used_at IS NULL AND NEW.used_at IS NOT NULL"),
    ),
    # Recordings and reviews are events of their call (recording.store/purge,
    # call_review.create): a recording deleted or a score changed outside the application
    # is what these catch.
    AuditedTable("telephony_recording", "call", "project_id", object_column="call_id"),
    AuditedTable("telephony_callreview", "call", "project_id", object_column="call_id"),
    # Monitoring (callvault/monitoring): the policy, enrolment codes and devices. A code and a
    # device token are kept as hashes, still credentials. What the agent's requests move on
    # a device (last seen, its address, the last heartbeat's seq and time, the silence
    # alert's mark) is bookkeeping; spans and screenshots are the agent's data, not
    # decisions (their reading is recorded: timeline.view, screenshot.view).
    AuditedTable("monitoring_monitoringpolicy", "monitoring_policy", "project_id"),
    AuditedTable(
        "monitoring_enrolmentcode", "enrolment_code", "project_id", sealed_columns=("code_hash",)
    ),
    AuditedTable(
        "monitoring_device",
        "device",
        "project_id",
        sealed_columns=("token_hash",),
        ignored_columns=(
            "last_seen_at",
            "last_ip",
            "last_seq",
            "last_heartbeat_at",
            "open_span_id",
            "silence_alerted_at",
        ),
    ),
    # Users belong to no project, but their events are filed under their project when they
    # have one (logins, password resets).
    AuditedTable(
        "accounts_user",
        "user",
        "",
        sealed_columns=("password",),
        ignored_columns=("last_login",),
        projects_from="accounts_membership.user_id",
    ),
)


def audited_table(table: str) -> AuditedTable:
    """The spec of one audited table."""
    return next(spec for spec in AUDITED_TABLES if spec.table == table)


def literal(value: str) -> str:
    """A SQL string literal (the values come from migrations, never from users)."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier; only plain lower-case names pass."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f'"{name}"'
