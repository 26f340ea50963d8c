"""Messaging parts that need no network: templates, sealing, retry timing, broker URLs."""

from __future__ import annotations

import jinja2
import pytest

from apicrud.config import load_settings, mask_url
from apicrud.messaging.envelope import EnvelopeError, Sealer
from apicrud.messaging.render import MessageRenderer, duration_text
from apicrud.messaging.send import SmtpConfig, build_message
from apicrud.worker.celery_app import broker_url, make_celery
from apicrud.worker.tasks import mask_address, retry_delay

CONTEXT = {"service": "svc", "api_url": "https://x.test/api/v1", "ttl_text": "1 day",
           "username": "jane", "name": "Jane", "token": "T0KEN"}


@pytest.mark.parametrize("template", ["confirm", "reset"])
def test_shipped_templates_render_subject_and_token(template):
    msg = MessageRenderer().render(template, **CONTEXT)
    assert "svc" in msg.subject and "\n" not in msg.subject
    assert "Token: T0KEN\n" in msg.body and "https://x.test/api/v1/auth/" in msg.body


def test_account_request_template_has_no_token():
    msg = MessageRenderer().render("account_request", service="svc", api_url="u",
                                   username="jane", name="Jane", email="j@x.test",
                                   account_id="x-1")
    assert msg.subject == "svc: account request from jane"
    assert "u/account/x-1/approve" in msg.body and "Token" not in msg.body


def test_missing_value_is_an_error_not_a_hole():
    with pytest.raises(jinja2.UndefinedError):
        MessageRenderer().render("reset", **{k: v for k, v in CONTEXT.items()
                                             if k != "token"})


def test_values_cannot_add_headers_and_overrides_win(tmp_path):
    (tmp_path / "reset.txt").write_text("Subject: hi {{ name }}\n\nmine {{ token }}\n")
    msg = MessageRenderer([tmp_path]).render("reset", name="a\nBcc: x@evil.test",
                                             token="t")
    assert msg.subject == "hi a Bcc: x@evil.test" and msg.body == "mine t\n"
    (tmp_path / "bad.txt").write_text("no subject here\n\nbody\n")
    with pytest.raises(jinja2.TemplateError):
        MessageRenderer([tmp_path]).render("bad")


def test_sealed_envelope_hides_the_body_and_needs_the_secret():
    sealer = Sealer("a-long-enough-secret-key")
    envelope = sealer.seal({"to": "a@b.test", "body": "Token: T0KEN"})
    assert "T0KEN" not in envelope and envelope.isascii()
    assert sealer.open(envelope)["body"] == "Token: T0KEN"
    for bad in (Sealer("another-secret-key-here").seal({"x": 1}), "garbage", "",
                envelope[:-4]):
        with pytest.raises(EnvelopeError):
            sealer.open(bad)


def test_retry_delay_doubles_up_to_the_cap():
    assert [retry_delay(30, n) for n in range(4)] == [30, 60, 120, 240]
    assert retry_delay(30, 20) == 3600
    assert retry_delay(0.25, 2, cap=0.6) == 0.6


def test_duration_text():
    assert duration_text(86400) == "1 day" and duration_text(172800) == "2 days"
    assert duration_text(90000) == "25 hours" and duration_text(5400) == "90 minutes"
    assert duration_text(1) == "1 second" and duration_text(61) == "61 seconds"


def test_mask_address():
    assert mask_address("jane@example.com") == "j***@example.com"
    assert mask_address(None) == "***" and mask_address("nope") == "***"


def test_broker_url_defaults_to_the_service_redis():
    settings = load_settings(root=".")
    assert broker_url(settings, "redis://h:6379/7") == "redis://h:6379/7"
    assert broker_url(settings, "unix:///tmp/x/redis.socket?db=0") == \
        "redis+socket:///tmp/x/redis.socket"
    rabbit = settings.replace(broker_url="amqp://guest:guest@127.0.0.1:5672//")
    assert broker_url(rabbit, "redis://h:6379/7").startswith("amqp://")
    assert mask_url("amqp://guest:pw@h:5672//") == "amqp://guest:***@h:5672//"


def test_celery_app_settings():
    settings = load_settings(root=".", worker_queue="q1")
    app = make_celery(settings, "redis://127.0.0.1:6379/0", worker=True)
    try:
        assert app.conf.task_default_queue == "q1" and app.conf.task_acks_late
        assert app.conf.task_reject_on_worker_lost
        assert app.conf.broker_transport_options["global_keyprefix"] == "apicrud:broker:"
        assert "apicrud.send_mail" in app.tasks
    finally:
        app.close()


def test_smtp_config_from_settings_hides_the_password():
    settings = load_settings(root=".", smtp_host="mail.test", smtp_port=587,
                             smtp_tls="starttls", smtp_username="u",
                             smtp_password="pw-secret")
    config = SmtpConfig.from_settings(settings)
    assert (config.host, config.port, config.tls, config.username) == \
        ("mail.test", 587, "starttls", "u")
    assert "pw-secret" not in repr(config)
    msg = build_message("Svc <noreply@svc.test>", "a@b.test", "s", "body\n", "abc")
    assert msg["Message-ID"].endswith("@svc.test>") and msg["From"] == "Svc <noreply@svc.test>"
