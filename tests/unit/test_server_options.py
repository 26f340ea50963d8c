"""``apicrud serve`` hands gunicorn its options: settings a gunicorn release may not have
(the control socket came in 25.1; pyproject allows 22) must not stop the server."""

from __future__ import annotations

import pytest
from gunicorn.config import Config

from apicrud.server import OPTIONAL_SETTINGS, _Gunicorn


class _Bare(_Gunicorn):
    """The application without starting anything: only load_config runs."""

    def __init__(self, options: dict, cfg: Config) -> None:
        self.options = options
        self.cfg = cfg


def _config_without(name: str) -> Config:
    cfg = Config()
    cfg.settings.pop(name, None)  # as on a gunicorn release that predates the setting
    return cfg


def test_a_setting_this_gunicorn_lacks_is_left_out():
    cfg = _config_without("control_socket_disable")
    _Bare({"control_socket_disable": True, "workers": 3}, cfg).load_config()
    assert cfg.workers == 3
    assert "control_socket_disable" not in cfg.settings


def test_a_setting_this_gunicorn_has_is_set():
    cfg = Config()
    if "control_socket_disable" not in cfg.settings:
        pytest.fail("the installed gunicorn has no control socket: this test needs >= 25.1")
    _Bare({"control_socket_disable": True}, cfg).load_config()
    assert cfg.settings["control_socket_disable"].get() is True


def test_an_unknown_required_setting_still_fails():
    # a misspelt option is a bug of ours, not an old gunicorn: it must not pass silently
    with pytest.raises(AttributeError):
        _Bare({"wrokers": 3}, Config()).load_config()
    assert "control_socket_disable" in OPTIONAL_SETTINGS
