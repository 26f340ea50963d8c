"""The messaging worker: a real Celery worker, a real broker and a real SMTP server.

The broker is the suite's Redis (embedded or standalone, as configured). With
``TEST_RABBITMQ_URL`` set (``.ci/run`` sets it) every test here also runs against
RabbitMQ. The worker's retry delays are shortened through settings so the whole
module takes seconds.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from apicrud.messaging.send import SmtpConfig, TransientMailError, build_message, send_message
from apicrud.worker.celery_app import REDIS_KEY_PREFIX, TASK_SEND, make_celery
from apicrud.worker.outbox import Outbox
from apicrud.worker.tasks import DeadLetters, requeue_dead_letters
from helpers import ROOT
from mailhelp import SLOW_SECONDS, SmtpSink, run_worker, service_log, wait_for

BROKERS = ["redis"] + (["rabbitmq"] if os.environ.get("TEST_RABBITMQ_URL") else [])
RETRIES, DELAY = 3, 0.25  # attempts at +0.25, +0.5, +1.0 s, then the dead-letter list


@dataclass
class Env:
    settings: object
    outbox: Outbox
    redis_url: str
    dead: DeadLetters
    broker: str


@pytest.fixture(scope="module")
def smtp():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module", params=BROKERS)
def env(request, server, smtp):
    broker = os.environ["TEST_RABBITMQ_URL"] if request.param == "rabbitmq" else ""
    settings = server.settings.replace(
        smtp_host="127.0.0.1", smtp_port=smtp.port, broker_url=broker,
        worker_queue=f"test-worker-{secrets.token_hex(4)}", mail_retry_delay=DELAY,
        mail_max_retries=RETRIES)
    redis_url = server.services.redis.url
    outbox = Outbox(settings, redis_url)
    dead = DeadLetters(server.services.redis.client)
    started = int(time.time())
    with run_worker(settings, redis_url) as app:
        yield Env(settings, outbox, redis_url, dead, request.param)
        if broker:  # leave no test queue behind on a shared RabbitMQ
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(settings.worker_queue)
    outbox.close()
    for raw in dead.redis.lrange(dead.key, 0, -1):  # nor this module's dead letters
        if json.loads(raw)["failed_at"] >= started:
            dead.redis.lrem(dead.key, 1, raw)


def address(prefix: str = "w") -> str:
    return f"{prefix}{secrets.token_hex(5)}@example.test"


def send(env: Env, to: str, token: str | None = None) -> str:
    return env.outbox.send(to, "reset", token=token or secrets.token_urlsafe(32),
                           username="someone", name="Some One", service="apicrud test",
                           api_url="http://127.0.0.1/api/v1", ttl_text="1 hour")


def dead_letter(env: Env, ident: str, timeout: float = 10.0) -> dict:
    return wait_for(lambda: next((r for r in env.dead.list(1000) if r["id"] == ident), None),
                    timeout, f"dead letter {ident}")


def test_message_rendered_sealed_and_sent(env, smtp):
    to, token = address(), secrets.token_urlsafe(32)
    send(env, to, token)
    msg = smtp.wait_mail(to)
    assert msg["Subject"] == "Reset your apicrud test password"
    assert msg["From"] == env.settings.mail_from and msg["Message-ID"] and msg["Date"]
    assert f"Token: {token}" in msg.get_content()
    assert "expires in 1 hour" in msg.get_content()


def test_request_does_not_wait_for_smtp(env, smtp):
    to = address("slow")
    started = time.perf_counter()
    send(env, to)
    assert time.perf_counter() - started < SLOW_SECONDS / 3
    assert smtp.find(to) == []
    smtp.wait_mail(to)


def test_failed_send_is_retried_until_the_server_is_back(env, smtp, caplog):
    caplog.set_level(logging.INFO)
    to, token = address(), secrets.token_urlsafe(32)
    smtp.stop()
    try:
        ident = send(env, to, token)
        wait_for(lambda: any(ident in r.getMessage() and "attempt 1 of" in r.getMessage()
                             for r in caplog.records), what="a failed first attempt")
    finally:
        smtp.start()
    assert token in smtp.wait_mail(to).get_content()
    assert all(r["id"] != ident for r in env.dead.list(1000))
    # the worker logs "sent" once the SMTP exchange is over, which is after the server
    # has the message: wait for the line rather than race it
    sent = f"mail {ident} (reset) sent"
    logged = wait_for(lambda: sent in (text := service_log(caplog)) and text,
                      what="the worker's 'sent' line")
    assert token not in logged


def test_send_that_keeps_failing_is_kept_and_logged(env, smtp, caplog):
    caplog.set_level(logging.INFO)
    to, token = address(), secrets.token_urlsafe(32)
    smtp.stop()
    try:
        ident = send(env, to, token)
        record = dead_letter(env, ident)
    finally:
        smtp.start()
    assert record["attempts"] == RETRIES + 1 and record["template"] == "reset"
    assert record["to"].startswith(to[0] + "***@") and "ConnectionRefused" in record["error"]
    assert token not in str(record)  # kept sealed
    # the worker logs after it has kept the record: wait for the line
    errors = wait_for(lambda: [r for r in caplog.records if r.levelno == logging.ERROR and
                               ident in r.getMessage()], what="the worker's error line")
    assert "dead-letter" in errors[0].getMessage()
    assert token not in service_log(caplog)
    # an operator requeues it once the server is back: it goes out
    publisher = make_celery(env.settings, env.redis_url)
    try:
        assert requeue_dead_letters(publisher, env.dead, env.settings.worker_queue) >= 1
    finally:
        publisher.close()
    assert token in smtp.wait_mail(to).get_content()


def test_refused_recipient_is_not_retried(env, smtp, caplog):
    ident = send(env, address("bounce"))
    record = dead_letter(env, ident)
    assert record["attempts"] == 1 and "550" in record["error"]


def test_unreadable_message_is_kept(env, caplog):
    publisher = make_celery(env.settings, env.redis_url)
    try:
        result = publisher.send_task(TASK_SEND, args=["not-a-sealed-message"],
                                     queue=env.settings.worker_queue)
    finally:
        publisher.close()
    record = dead_letter(env, result.id)
    assert "cannot open" in record["error"] and record["envelope"] == "not-a-sealed-message"


# -- SMTP transport security and login (the sender the worker uses) -------------------

@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_smtp_tls_with_login(tls, tmp_path):
    sink = SmtpSink(tls=tls, credentials=("mailer", "s3cret-pw"), cert_dir=str(tmp_path)).start()
    try:
        config = SmtpConfig("127.0.0.1", sink.port, tls, "mailer", "s3cret-pw",
                            sink.cert_file, timeout=10)
        assert "s3cret-pw" not in repr(config)
        to = address()
        send_message(config, build_message("a@example.test", to, "hi", "hello\n"))
        assert sink.find(to)[0].get_content().strip() == "hello"
        wrong = SmtpConfig("127.0.0.1", sink.port, tls, "mailer", "wrong", sink.cert_file,
                           timeout=10)
        with pytest.raises(TransientMailError, match="login refused"):
            send_message(wrong, build_message("a@example.test", to, "hi", "hello\n"))
        untrusted = SmtpConfig("127.0.0.1", sink.port, tls, "mailer", "s3cret-pw",
                               timeout=10)  # system CAs do not know the test certificate
        with pytest.raises(TransientMailError, match="CERTIFICATE_VERIFY_FAILED"):
            send_message(untrusted, build_message("a@example.test", to, "hi", "hello\n"))
    finally:
        sink.stop()


def test_starttls_required_but_not_offered(smtp):
    config = SmtpConfig("127.0.0.1", smtp.port, "starttls", timeout=10)
    with pytest.raises(TransientMailError, match="STARTTLS"):
        send_message(config, build_message("a@example.test", address(), "hi", "x\n"))


# -- the command line -----------------------------------------------------------------

def test_apicrud_worker_and_dead_letters_commands(server, smtp):
    queue = f"test-cli-{secrets.token_hex(4)}"
    settings = server.settings.replace(smtp_host="127.0.0.1", smtp_port=smtp.port,
                                       worker_queue=queue)
    env_vars = {**os.environ, "APICRUD_REDIS_URL": server.services.redis.url,
                "APICRUD_SECRET_KEY": settings.secret_key, "APICRUD_SMTP_HOST": "127.0.0.1",
                "APICRUD_SMTP_PORT": str(smtp.port), "APICRUD_WORKER_QUEUE": queue,
                "APICRUD_BROKER_URL": ""}
    command = [sys.executable, "-m", "apicrud.cli", "--root", ROOT]
    proc = subprocess.Popen([*command, "worker", "--concurrency", "1"], env=env_vars,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outbox = Outbox(settings, server.services.redis.url)
    try:
        to, token = address(), secrets.token_urlsafe(32)
        outbox.send(to, "reset", token=token, username="u", name="n", service="s",
                    api_url="http://x", ttl_text="1 hour")
        assert token in smtp.wait_mail(to, timeout=30).get_content()
    finally:
        outbox.close()
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert f"queue {queue}" in output and token not in output
    client = server.services.redis.client
    client.delete(*(f"{REDIS_KEY_PREFIX}{name}" for name in (
        queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")))
    listing = subprocess.run([*command, "dead-letters"], env=env_vars, capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "dead letter(s)" in listing.stdout
