"""Every table Vigil stores: the control plane, and the telemetry tables generated from the declared schema."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from vigil.core import telemetry as t
from vigil.core import tvm_schema

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

UtcDateTime = sa.DateTime(timezone=True)

device_groups = sa.Table(
    "device_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    # Rank 1 is matched first; the default group has no rank and matches last.
    sa.Column("rank", sa.Integer, nullable=True),
    sa.Column("automation_level", sa.String(64), nullable=False, default="FullRemediation"),
    sa.Column("is_default", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Matching rule: a list of {"property", "operator", "value"} conditions, all of which must hold.
    sa.Column("rules", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    # When true, a name, OS or agent-tag change its devices report applies at once (still recorded and
    # audited); when false it waits for an administrator, so a device cannot move itself out of the group.
    sa.Column("trust_reported_identity", sa.Boolean, nullable=False, server_default=sa.false()),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("computer_dns_name", sa.String(255), nullable=False),
    sa.Column("os_platform", sa.String(32), nullable=False),
    sa.Column("os_version", sa.String(128), nullable=False, default=""),
    sa.Column("os_build", sa.String(128), nullable=False, default=""),
    sa.Column("agent_version", sa.String(32), nullable=False, default=""),
    sa.Column("machine_id", sa.String(128), nullable=False, default=""),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("device_groups.id"), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False, default=list),
    # Tags the agent reports from its config file; the device's tags are these plus `tags` (set by analysts).
    sa.Column("agent_tags", sa.JSON, nullable=False, default=list),
    sa.Column("credential_hash", sa.String(64), nullable=False),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Column("last_ip", sa.String(64), nullable=True),
    sa.Column("last_external_ip", sa.String(64), nullable=True),
    sa.Column("counters", sa.JSON, nullable=False, default=dict),
    sa.Column("sensors", sa.JSON, nullable=False, default=dict),
    sa.Column("offboarded_at", UtcDateTime, nullable=True),
    sa.Column("enrollment_token_id", sa.Integer, sa.ForeignKey("enrollment_tokens.id"), nullable=True),
    # computer_dns_name, os_platform and agent_tags are the device's *accepted* identity; this is when its
    # first DeviceInfo completed it (the enrolment request carries no tags). Later reports that differ
    # become device_identity_changes.
    sa.Column("identity_established_at", UtcDateTime, nullable=True),
)

device_identity_changes = sa.Table(
    "device_identity_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device_id", sa.String(40), sa.ForeignKey("devices.id"), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    # Identity.as_json() of the accepted identity when the change was seen, and of the latest report.
    sa.Column("before", sa.JSON, nullable=False),
    sa.Column("after", sa.JSON, nullable=False),
    sa.Column("detected_at", UtcDateTime, nullable=False),
    sa.Column("last_reported_at", UtcDateTime, nullable=False),
    sa.Column("reports", sa.Integer, nullable=False, default=1),
    sa.Column("revision", sa.Integer, nullable=False, default=1),
    sa.Column("decided_by", sa.String(255), nullable=True),
    sa.Column("decided_at", UtcDateTime, nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
)

enrollment_tokens = sa.Table(
    "enrollment_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("device_groups.id"), nullable=True),
    sa.Column("max_uses", sa.Integer, nullable=False),
    sa.Column("uses", sa.Integer, nullable=False, default=0),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

telemetry_batches = sa.Table(
    "telemetry_batches",
    metadata,
    sa.Column("device_id", sa.String(40), primary_key=True),
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("event_count", sa.Integer, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(128), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    # "local" (argon2 password) or "oidc" (signs in only through the identity provider).
    sa.Column("source", sa.String(16), nullable=False, server_default="local"),
    sa.Column("oidc_subject", sa.String(512), nullable=True, unique=True),
    # Ties a user to a plan stakeholder: only that user may sign off for that stakeholder.
    sa.Column("email", sa.String(255), nullable=True),
    sa.Column("password_changed_at", UtcDateTime, nullable=True),
    # TOTP second factor: a secret without totp_enabled_at is an enrolment not yet confirmed with a code.
    # Sealed (AES-GCM) with a key derived from the server's session key: a database copy alone opens nothing.
    sa.Column("totp_secret", sa.String(255), nullable=True),
    sa.Column("totp_enabled_at", UtcDateTime, nullable=True),
    # The last time step a code was accepted for: a code is good once, even inside its window.
    sa.Column("totp_last_step", sa.BigInteger, nullable=True),
    # The first sign-in at which the role policy required a second factor: the grace period runs from it.
    sa.Column("mfa_grace_started_at", UtcDateTime, nullable=True),
)

# Single-use codes that stand in for the TOTP code; stored as SHA-256 (they are 80 random bits).
recovery_codes = sa.Table(
    "recovery_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime, nullable=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("last_used_at", UtcDateTime, nullable=True),
)

roles = sa.Table(
    "roles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("permissions", sa.JSON, nullable=False),
    sa.Column("builtin", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

user_groups = sa.Table(
    "user_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

user_group_members = sa.Table(
    "user_group_members",
    metadata,
    sa.Column("user_group_id", sa.Integer, sa.ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    # "local" memberships are managed in Vigil; "oidc" ones are replaced at every single sign-on.
    sa.Column("via", sa.String(16), nullable=False, default="local"),
    # A temporary role assignment: the membership stops counting at this time (access_for checks the clock).
    sa.Column("expires_at", UtcDateTime, nullable=True),
)

role_user_groups = sa.Table(
    "role_user_groups",
    metadata,
    sa.Column("role_id", sa.Integer, sa.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_group_id", sa.Integer, sa.ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True),
)

device_group_access = sa.Table(
    "device_group_access",
    metadata,
    sa.Column("device_group_id", sa.Integer, sa.ForeignKey("device_groups.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("user_group_id", sa.Integer, sa.ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True),
)

tenant_settings = sa.Table(
    "tenant_settings",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", UtcDateTime, nullable=False, index=True),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("source_ip", sa.String(64), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_type", sa.String(64), nullable=False),
    sa.Column("target_id", sa.String(255), nullable=False),
    sa.Column("before", sa.JSON, nullable=True),
    sa.Column("after", sa.JSON, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    # Each entry hashes its predecessor's hash: a unique prev_hash means the chain cannot fork.
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hash", sa.String(64), nullable=False),
)

deployment_plans = sa.Table(
    "deployment_plans",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
)

plan_signoffs = sa.Table(
    "plan_signoffs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("plan_version", sa.Integer, sa.ForeignKey("deployment_plans.version"), nullable=False),
    sa.Column("plan_digest", sa.String(64), nullable=False),
    sa.Column("stakeholder_email", sa.String(255), nullable=False),
    sa.Column("signed_by", sa.String(128), nullable=False),
    sa.Column("signed_at", UtcDateTime, nullable=False),
    # A sign-off given offline on a plan file (`vigil plan sign --plan`): who, their key and the detached signature.
    sa.Column("signer_name", sa.String(200), nullable=True),
    sa.Column("public_key", sa.String(64), nullable=True),
    sa.Column("signature", sa.String(128), nullable=True),
    sa.UniqueConstraint("plan_version", "stakeholder_email"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    # None for an identity alert (about an account, not a device; account_name says which).
    sa.Column("machine_id", sa.String(40), sa.ForeignKey("devices.id"), nullable=True, index=True),
    sa.Column("account_name", sa.String(256), nullable=True),
    sa.Column("incident_id", sa.Integer, nullable=True),
    sa.Column("title", sa.String(512), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("classification", sa.String(16), nullable=True),
    sa.Column("determination", sa.String(32), nullable=True),
    sa.Column("investigation_state", sa.String(32), nullable=False, default="Unknown"),
    sa.Column("detection_source", sa.String(32), nullable=False),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("mitre_techniques", sa.JSON, nullable=False, default=list),
    sa.Column("assigned_to", sa.String(128), nullable=True),
    sa.Column("alert_creation_time", UtcDateTime, nullable=False, index=True),
    sa.Column("first_event_time", UtcDateTime, nullable=False),
    sa.Column("last_event_time", UtcDateTime, nullable=False),
    sa.Column("last_update_time", UtcDateTime, nullable=False),
    sa.Column("resolved_time", UtcDateTime, nullable=True),
    sa.Column("event_count", sa.Integer, nullable=False, default=1),
    sa.Column("evidence", sa.JSON, nullable=False, default=list),
    # Set when a suppression rule applied at creation; hidden alerts leave the API and portal.
    sa.Column("suppressed_by", sa.Integer, nullable=True),
    sa.Column("hidden", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_alerts_dedup", "machine_id", "rule_id", "status"),
)

alert_comments = sa.Table(
    "alert_comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alert_id", sa.String(40), sa.ForeignKey("alerts.id"), nullable=False, index=True),
    sa.Column("author", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # Comment, or History for automatic entries
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

suppression_rules = sa.Table(
    "suppression_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alert_title", sa.String(512), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("conditions", sa.JSON, nullable=False, default=dict),
    sa.Column("machine_id", sa.String(40), nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("hits", sa.Integer, nullable=False, default=0),
)

indicators = sa.Table(
    "indicators",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("indicator_value", sa.String(2048), nullable=False),
    sa.Column("indicator_type", sa.String(32), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("title", sa.String(512), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("expiration_time", UtcDateTime, nullable=True),
    sa.Column("rbac_group_ids", sa.JSON, nullable=False, default=list),
    sa.Column("generate_alert", sa.Boolean, nullable=False, default=False),
    sa.Column("recommended_actions", sa.Text, nullable=False, default=""),
    sa.Column("application", sa.String(256), nullable=False, default=""),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("creation_time", UtcDateTime, nullable=False),
    sa.Column("last_updated_by", sa.String(128), nullable=False),
    sa.Column("last_update_time", UtcDateTime, nullable=False),
    sa.UniqueConstraint("indicator_type", "indicator_value"),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("assigned_to", sa.String(128), nullable=True),
    sa.Column("classification", sa.String(16), nullable=True),
    sa.Column("determination", sa.String(32), nullable=True),
    sa.Column("created_time", UtcDateTime, nullable=False),
    sa.Column("last_update_time", UtcDateTime, nullable=False),
    sa.Column("last_activity", UtcDateTime, nullable=False, index=True),
    # Correlation state: the devices and entities its alerts involve, as JSON lists.
    sa.Column("device_ids", sa.JSON, nullable=False, default=list),
    sa.Column("entities", sa.JSON, nullable=False, default=list),
    sa.Column("redirect_incident_id", sa.Integer, nullable=True),
)

live_response_sessions = sa.Table(
    "live_response_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device_id", sa.String(40), sa.ForeignKey("devices.id"), nullable=False, index=True),
    sa.Column("username", sa.String(255), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime, nullable=True),
)

machine_actions = sa.Table(
    "machine_actions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("device_id", sa.String(40), sa.ForeignKey("devices.id"), nullable=False, index=True),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("approval", sa.String(16), nullable=False),
    sa.Column("requestor", sa.String(255), nullable=False),
    sa.Column("requestor_comment", sa.Text, nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    # The signed envelope, made when the action may run (at once, or when approved); sent as stored.
    sa.Column("command", sa.JSON, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False, index=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    sa.Column("decided_by", sa.String(255), nullable=True),
    sa.Column("decision_comment", sa.Text, nullable=True),
    sa.Column("result_message", sa.Text, nullable=False, default=""),
    sa.Column("result_output", sa.JSON, nullable=True),
    sa.Column("refused", sa.String(32), nullable=True),
    sa.Column("related_file_sha256", sa.String(64), nullable=True),
    sa.Column("artifact_sha256", sa.String(64), nullable=True),
    sa.Column("artifact_size", sa.BigInteger, nullable=True),
    sa.Column("undo_of", sa.String(40), nullable=True),
    sa.Column("session_id", sa.Integer, sa.ForeignKey("live_response_sessions.id"), nullable=True, index=True),
)

live_response_library = sa.Table(
    "live_response_library",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("uploaded_by", sa.String(255), nullable=False),
    sa.Column("uploaded_at", UtcDateTime, nullable=False),
)

_SA_TYPES: dict[t.ColumnType, sa.types.TypeEngine[Any]] = {
    t.ColumnType.STRING: sa.Text(),
    t.ColumnType.INT: sa.Integer(),
    t.ColumnType.LONG: sa.BigInteger(),
    t.ColumnType.BOOL: sa.Boolean(),
    t.ColumnType.DATETIME: UtcDateTime,
    t.ColumnType.DYNAMIC: sa.Text(),  # JSON text: validated on ingest, queried with JSON functions
    t.ColumnType.REAL: sa.Float(),
}


def _telemetry_table(decl: t.Table) -> sa.Table:
    cols = [sa.Column(c.name, _SA_TYPES[c.type], nullable=not c.required) for c in decl.columns]
    return sa.Table(
        decl.name,
        metadata,
        *cols,
        sa.Index(f"ix_{decl.name}_device_time", "DeviceId", "Timestamp"),
        sa.Index(f"ix_{decl.name}_time", "Timestamp"),
    )


telemetry_tables: dict[str, sa.Table] = {name: _telemetry_table(d) for name, d in t.TABLES.items()}

# Integrations (issue 25): OAuth2 client-credentials applications and their access tokens, streaming export.
oauth_applications = sa.Table(
    "oauth_applications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("client_id", sa.String(36), nullable=False, unique=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    # Defender's application permission names (Alert.Read.All, Machine.Isolate, ...).
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("secret_expires_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("last_token_at", UtcDateTime, nullable=True),
)

oauth_tokens = sa.Table(
    "oauth_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("oauth_applications.id"), nullable=False, index=True),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)

export_destinations = sa.Table(
    "export_destinations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    # Telemetry table names and "Alerts"; the records a destination is sent.
    sa.Column("tables", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Delivery state: the outbox sequence number delivered up to (the durable cursor), counters, the last error.
    sa.Column("cursor", sa.BigInteger, nullable=False),
    sa.Column("sent", sa.BigInteger, nullable=False, default=0),
    sa.Column("failed", sa.BigInteger, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_error_at", UtcDateTime, nullable=True),
    sa.Column("last_sent_at", UtcDateTime, nullable=True),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
)

# What was stored, in order, for the exporters: one row per stored batch (its rows) or per batch of new alerts
# (their ids), written in the batch's own transaction so a record is exported if and only if it is stored.
export_outbox = sa.Table(
    "export_outbox",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("created_at", UtcDateTime, nullable=False, index=True),
    sa.Column("records", sa.JSON, nullable=False),
)

# Automated investigations (vigil.air): one row each, its entities, verdicts and log as JSON since they are read
# and written whole; its remediations one row each, since each is tracked through its machine action.
air_investigations = sa.Table(
    "air_investigations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("machine_id", sa.String(40), sa.ForeignKey("devices.id"), nullable=False, index=True),
    sa.Column("triggering_alert_id", sa.String(64), nullable=True, index=True),
    sa.Column("incident_id", sa.Integer, nullable=True),
    sa.Column("parent_id", sa.Integer, nullable=True),
    # Alert, Incident, Device, Api or Expansion; the actor who started it by hand, or "AIR".
    sa.Column("triggered_by", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(256), nullable=False),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("status_details", sa.Text, nullable=False, default=""),
    sa.Column("automation_level", sa.String(64), nullable=False),
    sa.Column("start_time", UtcDateTime, nullable=False),
    sa.Column("end_time", UtcDateTime, nullable=True),
    sa.Column("last_update_time", UtcDateTime, nullable=False),
    sa.Column("cancelled_by", sa.String(256), nullable=True),
    sa.Column("entities", sa.JSON, nullable=False),
    sa.Column("verdicts", sa.JSON, nullable=False),
    sa.Column("log", sa.JSON, nullable=False),
    # Devices where the same hash, address or domain is seen: {"devices": {...}, "needsApproval": bool, "state"}.
    sa.Column("expansion", sa.JSON, nullable=False),
)

air_remediations = sa.Table(
    "air_remediations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("investigation_id", sa.Integer, sa.ForeignKey("air_investigations.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("entity_key", sa.String(2048), nullable=False),
    sa.Column("machine_id", sa.String(40), nullable=False),
    sa.Column("target_path", sa.String(4096), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),
    sa.Column("action_id", sa.String(40), nullable=True, index=True),
    sa.Column("why", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Ask an expert: a question from an alert, incident or investigation to an expert user group, or a targeted attack
# notification an expert raises for a device group; the case's devices bound what the expert may see.
expert_cases = sa.Table(
    "expert_cases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),  # Question or TargetedAttackNotification
    sa.Column("source_type", sa.String(16), nullable=False),  # Alert, Incident, Investigation, DeviceGroup
    sa.Column("source_id", sa.String(64), nullable=False),
    sa.Column("machine_ids", sa.JSON, nullable=False),
    sa.Column("expert_group", sa.String(128), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # Open, Answered, Closed
    sa.Column("requested_by", sa.String(256), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("answer", sa.Text, nullable=True),
    sa.Column("answered_by", sa.String(256), nullable=True),
    sa.Column("answered_at", UtcDateTime, nullable=True),
    sa.Column("hunting_queries", sa.JSON, nullable=False),
    sa.Column("recommended_actions", sa.JSON, nullable=False),
)


# Vulnerability management: the state tables hunting reads (declared in core/tvm_schema.py, Defender's names),
# and what the server keeps besides.
def _tvm_table(decl: t.Table, key: tuple[str, ...], index: str) -> sa.Table:
    cols = [sa.Column(c.name, _SA_TYPES[c.type], nullable=not c.required) for c in decl.columns]
    return sa.Table(decl.name, metadata, *cols, sa.PrimaryKeyConstraint(*key),
                    sa.Index(f"ix_{decl.name}_{index}", index))


tvm_software_inventory = _tvm_table(tvm_schema.DEVICE_TVM_SOFTWARE_INVENTORY, ("DeviceId", "SoftwarePurl"),
                                    "SoftwareName")
tvm_software_vulnerabilities = _tvm_table(tvm_schema.DEVICE_TVM_SOFTWARE_VULNERABILITIES,
                                          ("DeviceId", "SoftwarePurl", "CveId"), "CveId")
tvm_secure_configuration = _tvm_table(tvm_schema.DEVICE_TVM_SECURE_CONFIGURATION_ASSESSMENT,
                                      ("DeviceId", "ConfigurationId"), "ConfigurationId")

# Where each device's inventory stands: the agent's series and generation the server holds (a diff applies only
# on it), the generation whose parts are arriving, and whether it is waiting for a full inventory.
tvm_inventory_state = sa.Table(
    "tvm_inventory_state",
    metadata,
    sa.Column("device_id", sa.String(40), sa.ForeignKey("devices.id"), primary_key=True),
    sa.Column("series", sa.String(64), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("pending_generation", sa.Integer, nullable=True),
    sa.Column("next_part", sa.Integer, nullable=False, default=1),
    sa.Column("out_of_sync", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # The feed bundle the device's weaknesses were last computed with (its manifest sequence).
    sa.Column("feed_sequence", sa.BigInteger, nullable=True),
)

# Daily exposure score per device ("" for the organisation), so the portal can draw the trend.
tvm_score_history = sa.Table(
    "tvm_score_history",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("device_id", sa.String(40), primary_key=True),
    sa.Column("exposure_score", sa.Integer, nullable=False),
    sa.Column("weaknesses", sa.Integer, nullable=False),
)

# Remediation requests (Defender's "remediation activities") and exceptions on security recommendations.
tvm_remediations = sa.Table(
    "tvm_remediations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("recommendation_id", sa.String(600), nullable=False, index=True),
    sa.Column("title", sa.String(1024), nullable=False),
    sa.Column("remediation_type", sa.String(32), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("due_on", sa.String(10), nullable=False),
    sa.Column("notes", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rbac_group_ids", sa.JSON, nullable=False, default=list),
    sa.Column("target_devices", sa.JSON, nullable=False, default=list),  # the exposed devices when requested
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("completed_at", UtcDateTime, nullable=True),
)

tvm_exceptions = sa.Table(
    "tvm_exceptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("recommendation_id", sa.String(600), nullable=False, index=True),
    sa.Column("justification", sa.String(32), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("scope", sa.String(16), nullable=False),  # Global or DeviceGroups
    sa.Column("rbac_group_ids", sa.JSON, nullable=False, default=list),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("cancelled_by", sa.String(255), nullable=True),
    sa.Column("cancelled_at", UtcDateTime, nullable=True),
)

# Custom detection rules (issue 24): a hunting query on a schedule, raising alerts with the rule's fields.
custom_detections = sa.Table(
    "custom_detections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("display_name", sa.String(256), nullable=False, unique=True),
    sa.Column("query_text", sa.Text, nullable=False),
    sa.Column("period", sa.String(8), nullable=False),  # Defender's 1H, 3H, 12H, 24H
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("title", sa.String(512), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("mitre_techniques", sa.JSON, nullable=False, default=list),
    sa.Column("response_actions", sa.JSON, nullable=False, default=list),
    # The creator's device groups (None: all); runs see no more than the creator could.
    sa.Column("device_group_ids", sa.JSON, nullable=True),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_modified_by", sa.String(255), nullable=False),
    sa.Column("last_modified_at", UtcDateTime, nullable=False),
    sa.Column("last_run_at", UtcDateTime, nullable=True),
    sa.Column("last_run_status", sa.String(16), nullable=True),
    sa.Column("last_failure_reason", sa.Text, nullable=True),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, default=0),
)

custom_detection_runs = sa.Table(
    "custom_detection_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("detection_id", sa.Integer, sa.ForeignKey("custom_detections.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # completed or failed
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("new_hits", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)

# The dedup key of Defender's custom detections: a (DeviceId, ReportId) raises at most once per rule.
custom_detection_hits = sa.Table(
    "custom_detection_hits",
    metadata,
    sa.Column("detection_id", sa.Integer, sa.ForeignKey("custom_detections.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("device_id", sa.String(40), primary_key=True),
    sa.Column("report_id", sa.String(64), primary_key=True),
    sa.Column("alert_id", sa.String(40), nullable=False),
    sa.Column("seen_at", UtcDateTime, nullable=False),
)

# Windows event shippers (Winlogbeat, Fluent Bit) that post to the ingest route, each with its own secret (issue 25).
event_sources = sa.Table(
    "event_sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("last_seen_at", UtcDateTime, nullable=True),
    sa.Column("events", sa.BigInteger, nullable=False, default=0),
)

# Antivirus policy per device group; group_id NULL is the tenant default (one row, kept so by the service) (issue 20).
av_policies = sa.Table(
    "av_policies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("device_groups.id", ondelete="CASCADE"), nullable=True,
              unique=True),
    sa.Column("policy", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
