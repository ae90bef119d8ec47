"""Account security shared by the API and the portal: throttled sign-in, the second factor, password and MFA changes.

Every change to how an account signs in (password, second factor) revokes the account's sessions.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import datetime

import sqlalchemy as sa

from vigil.core.alerts import DetectionSource
from vigil.core.attack import AttackTactic
from vigil.core.mfa import MfaState, MfaStatus, new_recovery_codes
from vigil.core.passwords import WeakPassword, context_words
from vigil.core.severity import Severity
from vigil.core.throttle import GUESSING_RULE_ID, GUESSING_TECHNIQUE, GuessingReport
from vigil.server import totp
from vigil.server.errors import APIError
from vigil.server.services import Services
from vigil.store import audit, mfa
from vigil.store.alerts import NewHit, record_hit
from vigil.store.audit import Change
from vigil.store.sessions import close_user_sessions
from vigil.store.users import User, password_matches, set_password, verify_login

log = logging.getLogger("vigil.server.accounts")
ISSUER = "Vigil"
GUESSING_ACTOR = "(sign-in throttle)"


def source_of(ip: str | None) -> str:
    """The source a back-off applies to: the address, or for IPv6 its /64 (one host usually holds a whole /64)."""
    if not ip:
        return "?"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


def _record_guessing(conn: sa.Connection, report: GuessingReport | None, now: datetime) -> None:
    if report is None:
        return
    log.warning("sustained password guessing for account %r: %d failures in %d minutes from %d sources",
                report.account, report.failures, report.window_seconds // 60, len(report.sources))
    audit.append(conn, Change(GUESSING_ACTOR, "user.password_guessing", "user", report.account, after={
        "failures": report.failures, "windowMinutes": int(report.window_seconds // 60),
        "sources": list(report.sources[:50]), "sourceCount": len(report.sources),
    }), now)
    # One identity alert per account: reports within the fold window join the open alert (store.alerts).
    minutes = int(report.window_seconds // 60)
    record_hit(conn, NewHit(
        machine_id=None, account_name=report.account, rule_id=GUESSING_RULE_ID,
        title="Sustained password guessing against a Vigil account",
        description=(f"{report.failures} failed sign-ins for account {report.account!r} within {minutes} minutes "
                     f"from {len(report.sources)} source address(es). Sign-in is throttled per source, never "
                     "locked; check the addresses and whether the account needs a second factor."),
        severity=Severity.MEDIUM.value, category=AttackTactic.CREDENTIAL_ACCESS.value,
        detection_source=DetectionSource.SIGN_IN.value, techniques=[GUESSING_TECHNIQUE], event_time=now,
        evidence={"entityType": "User", "Timestamp": now.isoformat(), "accountName": report.account,
                  "failedSignIns": report.failures, "windowMinutes": minutes,
                  "ipAddresses": list(report.sources[:50]), "sourceCount": len(report.sources)},
    ), now)


def _refuse_if_waiting(svc: Services, account: str, ip: str | None) -> None:
    wait = svc.sign_in_throttle.wait_seconds(account, source_of(ip))
    if wait:
        report = svc.sign_in_throttle.refused(account, source_of(ip))
        if report is not None:
            with svc.engine.begin() as conn:
                _record_guessing(conn, report, svc.clock.now())
        raise APIError(429, "rate_limited", f"too many failed sign-ins for this account from your address; "
                       f"try again in {wait} seconds", headers={"Retry-After": str(wait)})


def _failed(svc: Services, username: str, ip: str | None, method: str, reason: str) -> None:
    report = svc.sign_in_throttle.failed(username.casefold(), source_of(ip))
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        audit.append(conn, Change(username, "user.sign_in_failed", "user", username,
                                  after={"method": method, "reason": reason}, source_ip=ip), now)
        _record_guessing(conn, report, now)


def password_sign_in(svc: Services, username: str, password: str, ip: str | None) -> User:
    """The first factor, under the back-off for (account, source) and the limit per address; raises APIError."""
    _refuse_if_waiting(svc, username.casefold(), ip)
    if not svc.login_limiter.allow(ip or "?"):
        raise APIError(429, "rate_limited", "too many sign-in attempts from your address; wait a minute",
                       headers={"Retry-After": "60"})
    with svc.engine.begin() as conn:
        user = verify_login(conn, username, password)
    if user is None:
        _failed(svc, username, ip, "password", "wrong user name or password")
        raise APIError(401, "bad_credentials", "wrong user name or password")
    return user


def second_factor(svc: Services, user: User, ip: str | None, *, code: str = "", recovery_code: str = "") -> str:
    """Check a TOTP code (each good once) or spend a recovery code; returns the sign-in method for the audit."""
    _refuse_if_waiting(svc, user.username.casefold(), ip)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        if recovery_code:
            method, ok = "password+recovery_code", mfa.use_recovery_code(conn, user.id, recovery_code, now)
        else:
            secret = _secret(svc, conn, user, enabled=True)
            step = totp.matching_step(secret, code, now) if secret else None
            method, ok = "password+totp", step is not None and mfa.accept_step(conn, user.id, step)
    if not ok:
        what = "recovery code" if recovery_code else "TOTP code"
        _failed(svc, user.username, ip, method, f"wrong or already used {what}")
        raise APIError(401, "bad_second_factor", f"wrong or already used {what}",
                       field="recoveryCode" if recovery_code else "totp")
    return method


def sign_in_status(svc: Services, user: User) -> MfaStatus:
    """Where the user stands against the MFA policy at this sign-in; starts the grace period the first time."""
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        status = mfa.mfa_status(conn, user, svc.mfa_policy, now)
        if status.state is MfaState.GRACE and user.mfa_grace_started_at is None:
            mfa.start_grace(conn, user.id, now)
    return status


def record_sign_in(svc: Services, user: User, method: str, ip: str | None) -> None:
    svc.sign_in_throttle.succeeded(user.username.casefold(), source_of(ip))
    with svc.engine.begin() as conn:
        after: dict[str, object] = {"method": method}
        if method.endswith("recovery_code"):
            after["recoveryCodesLeft"] = mfa.recovery_codes_left(conn, user.id)
        audit.append(conn, Change(user.username, "user.sign_in", "user", user.username, after=after, source_ip=ip),
                     svc.clock.now())


def check_new_password(svc: Services, user_name: str, email: str | None, password: str) -> None:
    """The policy's verdict as a 422 naming what is wrong."""
    try:
        svc.password_policy.check(password, context_words(user_name, email))
    except WeakPassword as e:
        raise APIError(422, "weak_password", str(e), field="password") from None


def _confirm_password(svc: Services, user: User, password: str, ip: str | None) -> None:
    """Ask for the password again before a change to how the account signs in; a wrong one counts as a guess."""
    _refuse_if_waiting(svc, user.username.casefold(), ip)
    with svc.engine.connect() as conn:
        ok = password_matches(conn, user.id, password)
    if not ok:
        _failed(svc, user.username, ip, "password", "wrong current password")
        raise APIError(403, "bad_credentials", "the current password is wrong", field="currentPassword")


def _local(user: User) -> None:
    if user.source != "local":
        raise APIError(409, "not_local", f"{user.username} signs in through single sign-on; "
                       "its password and second factor are the identity provider's", field="username")


def change_password(svc: Services, user: User, new: str, actor: str, ip: str | None, *,
                    current: str | None = None) -> None:
    """Set a new password: the user's own (``current`` given) or an administrator's reset; revokes every session."""
    _local(user)
    if current is not None:
        _confirm_password(svc, user, current, ip)
    check_new_password(svc, user.username, user.email, new)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        set_password(conn, user.id, new, now)
        close_user_sessions(conn, user.id, now)
        audit.append(conn, Change(actor, "user.password_change" if current is not None else "user.password_reset",
                                  "user", user.username, source_ip=ip), now)


def _secret(svc: Services, conn: sa.Connection, user: User, *, enabled: bool) -> str | None:
    """The user's TOTP secret in clear; an enrolment this server's key cannot open is simply started again."""
    stored = mfa.totp_secret(conn, user.id, enabled=enabled)
    if stored is None:
        return None
    try:
        return totp.unseal(stored, svc.secret_key, user.id)
    except totp.SealError as e:
        if not enabled:
            return None
        log.error("TOTP secret of %r: %s", user.username, e)
        raise APIError(409, "mfa_unreadable", f"{e}; an administrator must reset this account's second factor "
                       f"(DELETE /api/users/{user.username}/mfa)") from None


def totp_enrolment(svc: Services, user: User) -> str:
    """The secret of the user's enrolment in progress (a new one when there is none); 409 when TOTP is on."""
    _local(user)
    if user.totp_enabled:
        raise APIError(409, "mfa_enabled", "TOTP is already on for this account; turn it off first to enrol again")
    with svc.engine.begin() as conn:
        secret = _secret(svc, conn, user, enabled=False)
        if secret is None:
            secret = totp.new_secret()
            mfa.begin_totp(conn, user.id, totp.seal(secret, svc.secret_key, user.id))
    return secret


def confirm_totp(svc: Services, user: User, code: str, ip: str | None) -> list[str]:
    """Turn TOTP on once a code from the app matches; returns the recovery codes (shown once) and revokes sessions."""
    _local(user)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        secret = _secret(svc, conn, user, enabled=False)
        if secret is None:
            raise APIError(409, "no_enrolment", "start the TOTP enrolment first (or TOTP is already on)")
        step = totp.matching_step(secret, code, now)
        if step is None or not mfa.accept_step(conn, user.id, step):
            raise APIError(422, "wrong_code", "that code does not match: check the time on your phone and type "
                           "the 6 digits the app shows now", field="code")
        codes = new_recovery_codes()
        mfa.enable_totp(conn, user.id, now, codes)
        close_user_sessions(conn, user.id, now)
        audit.append(conn, Change(user.username, "user.mfa_enable", "user", user.username,
                                  after={"method": "totp", "recoveryCodes": len(codes)}, source_ip=ip), now)
    return codes


def new_codes(svc: Services, user: User, password: str, ip: str | None) -> list[str]:
    """A fresh set of recovery codes (the old ones stop working), after the password is asked again."""
    _local(user)
    if not user.totp_enabled:
        raise APIError(409, "mfa_disabled", "turn TOTP on first; recovery codes stand in for its codes")
    _confirm_password(svc, user, password, ip)
    codes = new_recovery_codes()
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        mfa.replace_recovery_codes(conn, user.id, codes, now)
        audit.append(conn, Change(user.username, "user.mfa_recovery_codes", "user", user.username,
                                  after={"recoveryCodes": len(codes)}, source_ip=ip), now)
    return codes


def turn_off_totp(svc: Services, user: User, actor: str, ip: str | None, *, password: str | None = None) -> bool:
    """Remove the second factor: by the user (``password`` given) or reset by an administrator; revokes sessions."""
    _local(user)
    if password is not None:
        _confirm_password(svc, user, password, ip)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        removed = mfa.disable_totp(conn, user.id)
        if removed:
            close_user_sessions(conn, user.id, now)
            audit.append(conn, Change(actor, "user.mfa_disable" if password is not None else "user.mfa_reset",
                                      "user", user.username, before={"method": "totp"}, source_ip=ip), now)
    return removed


def mfa_overview(svc: Services, user: User) -> dict[str, object]:
    """The account's second-factor status as the API and the account page show it."""
    now = svc.clock.now()
    with svc.engine.connect() as conn:
        status = mfa.mfa_status(conn, user, svc.mfa_policy, now)
        required = user.source == "local" and svc.mfa_policy.required_for(mfa.role_names(conn, user))
        left = mfa.recovery_codes_left(conn, user.id) if user.totp_enabled else 0
    return {"totp": user.totp_enabled, "state": status.state.value, "required": required,
            "deadline": status.deadline.isoformat() if status.deadline else None, "recoveryCodesLeft": left}
