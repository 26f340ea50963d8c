"""The trashcan's retention purge as the worker runs it: scheduled by beat, through the
broker, executed by a real Celery worker against the suite's database."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from celery.beat import Scheduler

from apicrud.db.base import utcnow
from apicrud.worker.celery_app import make_celery
from apicrud.worker.retention import PURGE_EVERY, TASK_PURGE, Purger, schedule
from helpers import ROOT, new_list, stop_process
from mailhelp import run_worker, wait_for


def _settings(server, days: int):
    return server.settings.replace(trash_retention_days=days,
                                   worker_queue=f"test-retention-{secrets.token_hex(4)}")


def _trashed_list(server, user, age_days: float) -> str:
    record = new_list(user.api, name=f"trash-{secrets.token_hex(3)}")
    assert user.api.delete(f"/list/{record['id']}").status_code == 200
    with server.services.db.session() as s, s.begin():
        s.get(server.services.models.List, record["id"]).modified = \
            utcnow() - timedelta(days=age_days)
    return record["id"]


def _exists(server, record_id: str) -> bool:
    with server.services.db.session() as s:
        return s.get(server.services.models.List, record_id) is not None


def test_beat_schedule_has_the_purge_unless_retention_is_off(server):
    settings = _settings(server, 7)
    app = make_celery(settings, server.services.redis.url, worker=True)
    try:
        entry = app.conf.beat_schedule["purge-trash"]
        assert entry["task"] == TASK_PURGE and TASK_PURGE in app.tasks
        assert entry["schedule"] == PURGE_EVERY
        assert entry["options"]["queue"] == settings.worker_queue
    finally:
        app.close()
    off_settings = _settings(server, 0)
    off = make_celery(off_settings, server.services.redis.url)
    try:
        schedule(off, off_settings)
        assert "purge-trash" not in (off.conf.beat_schedule or {})
    finally:
        off.close()


def test_scheduled_purge_runs_in_the_worker(server, user):
    settings = _settings(server, 30)
    old = _trashed_list(server, user, 31)
    recent = _trashed_list(server, user, 29)
    with run_worker(settings, server.services.redis.url) as app:
        # what beat does when the entry is due: publish it with the entry's options
        beat = Scheduler(app, lazy=True)
        beat.setup_schedule()
        beat.apply_async(beat.schedule["purge-trash"], producer=None, advance=False)
        wait_for(lambda: not _exists(server, old), timeout=30, what="the old trash purged")
    assert _exists(server, recent)
    assert user.api.get(f"/trashcan/list-{recent}").status_code == 200
    assert user.api.get(f"/trashcan/list-{old}").status_code == 404


@pytest.mark.parametrize("days", [0, 30])
def test_purger_keeps_what_is_within_retention(server, user, days):
    settings = _settings(server, days)
    old = _trashed_list(server, user, 400)
    purger = Purger(settings)
    try:
        purged = purger.run()
    finally:
        purger.close()
    if days == 0:  # retention off: nothing is ever purged
        assert purged == 0 and _exists(server, old)
    else:
        assert purged >= 1 and not _exists(server, old)


def test_apicrud_beat_starts_with_the_purge_scheduled(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")}
    env.update(APICRUD_DATA_DIR=str(tmp_path), APICRUD_REDIS_URL=server.services.redis.url,
               APICRUD_DATABASE_URL=server.settings.sqlalchemy_url,
               APICRUD_WORKER_QUEUE=f"test-beat-{secrets.token_hex(4)}")
    beat = subprocess.Popen([sys.executable, "-m", "apicrud.cli", "beat", "--loglevel",
                             "WARNING"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in beat.stdout:  # start-up warnings may come first; EOF if it died
            seen.append(line)
            if line.startswith("apicrud beat:"):
                break
        assert seen and "'purge-trash'" in seen[-1], "".join(seen)
        time.sleep(1.0)
        assert beat.poll() is None, beat.stdout.read()  # still running: beat started
    finally:
        stop_process(beat)
        beat.stdout.close()
