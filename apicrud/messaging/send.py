"""Deliver a message to the configured SMTP server.

Transport security from setting ``smtp_tls``: ``none``, ``starttls`` (plain connection
upgraded before anything else is said; refused if the server does not offer it) or
``ssl`` (TLS from the first byte, usually port 465). Certificates are verified against
the system's CAs, or those in ``smtp_ca_file``. With ``smtp_username`` set the client
logs in, which it only does over TLS or on loopback, so credentials never cross a
network in the clear.

Failures are sorted for the worker: :class:`PermanentMailError` when the server refuses
the message itself (5xx for the recipients or the data: retrying cannot help),
:class:`TransientMailError` for everything else (server down, timeouts, 4xx, login or
TLS trouble an operator can fix), which the worker retries.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apicrud.config import Settings

__all__ = ["SmtpConfig", "MailError", "PermanentMailError", "TransientMailError",
           "build_message", "send_message"]

TIMEOUT = 30.0  # seconds for connecting and for each SMTP command


class MailError(Exception):
    """A message could not be delivered to the SMTP server."""

    permanent = False


class TransientMailError(MailError):
    """Worth retrying later."""


class PermanentMailError(MailError):
    """The server refused the message itself; retrying cannot help."""

    permanent = True


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to hand messages over; ``password`` never shows in a repr."""

    host: str = "localhost"
    port: int = 25
    tls: str = "none"  # none | starttls | ssl
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    mail_from: str = "apicrud <noreply@localhost>"
    timeout: float = TIMEOUT

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        ca_file = str(settings.path("smtp_ca_file")) if settings.smtp_ca_file else ""
        return cls(settings.smtp_host, settings.smtp_port, settings.smtp_tls,
                   settings.smtp_username, settings.smtp_password, ca_file,
                   settings.mail_from)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file or None)


def build_message(mail_from: str, to: str, subject: str, body: str,
                  message_id: str | None = None) -> EmailMessage:
    """A text/plain UTF-8 message with Date and Message-ID."""
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = mail_from.rpartition("@")[2].strip(" >") or "localhost"
    msg["Message-ID"] = make_msgid(idstring=message_id, domain=domain)
    msg.set_content(body)
    return msg


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def send_message(config: SmtpConfig, msg: EmailMessage) -> None:
    """Hand ``msg`` to the SMTP server; raise :class:`MailError` (sorted) on failure."""
    try:
        _send(config, msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        cls = PermanentMailError if codes and min(codes) >= 500 else TransientMailError
        raise cls(f"recipients refused ({', '.join(map(str, sorted(set(codes))))})") \
            from None
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
        cls = PermanentMailError if exc.smtp_code >= 500 and \
            isinstance(exc, smtplib.SMTPDataError) else TransientMailError
        raise cls(f"message refused: {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise TransientMailError(f"SMTP login refused: {exc.smtp_code}") from None
    except smtplib.SMTPResponseException as exc:
        raise TransientMailError(f"SMTP error {exc.smtp_code} {_text(exc.smtp_error)}") \
            from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise TransientMailError(f"{type(exc).__name__}: {exc}"[:300]) from None


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:200]


def _send(config: SmtpConfig, msg: EmailMessage) -> None:
    if config.tls == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(config.host, config.port,
                                                timeout=config.timeout,
                                                context=config.ssl_context())
    else:
        client = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
    with client:
        client.ehlo()
        if config.tls == "starttls":
            if not client.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError("server does not offer STARTTLS")
            client.starttls(context=config.ssl_context())
            client.ehlo()
        if config.username:
            if config.tls == "none" and not _loopback(config.host):
                raise smtplib.SMTPException("refusing to send SMTP credentials without TLS; "
                                            "set smtp_tls to starttls or ssl")
            client.login(config.username, config.password)
        client.send_message(msg)
