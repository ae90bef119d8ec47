"""Announces expert cases by webhook and e-mail, after the change is committed; a failed delivery is logged loudly
and never undoes the case."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

import httpx

from vigil.app.experts import Notification
from vigil.config import Settings

log = logging.getLogger("vigil.notify")


class ExpertNotifier:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, n: Notification) -> None:
        s = self.settings
        if s.expert_webhook_url:
            try:
                httpx.post(s.expert_webhook_url, timeout=10, json={
                    "event": n.event, "caseId": n.case_id, "subject": n.subject, "text": n.text})
            except httpx.HTTPError as e:
                log.warning("expert case %s: webhook %s failed: %s", n.case_id, s.expert_webhook_url, e)
        if s.smtp_host and n.recipients:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = s.mail_from, ", ".join(n.recipients), n.subject
            msg.set_content(n.text)
            try:
                with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=10) as smtp:
                    smtp.send_message(msg)
            except (OSError, smtplib.SMTPException) as e:
                log.warning("expert case %s: mail to %s failed: %s", n.case_id, ", ".join(n.recipients), e)
