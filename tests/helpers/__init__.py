"""Helpers the framework suite's test modules share (not fixtures: those stay in
``tests/conftest.py``). ``tests/`` is on ``sys.path`` while the suite runs (it holds the
root conftest), so a test module writes ``from helpers import make_user``.

- :mod:`helpers.server`: ``ROOT``, ``Api``, ``Server``, ``serve_app``, ``User``,
  ``random_account``, ``make_user``, ``stop_process``;
- :mod:`helpers.problems`: ``assert_problem``, ``new_list``;
- :mod:`helpers.project`: ``free_port``, ``run_cli``, ``write_connexion_project`` (a project
  of the user's own with connexion-style handlers).
"""

from helpers.problems import PROBLEM, assert_problem, new_list
from helpers.server import (
    ROOT,
    Api,
    Server,
    User,
    make_user,
    random_account,
    serve_app,
    stop_process,
)

__all__ = ["PROBLEM", "ROOT", "Api", "Server", "User", "assert_problem", "make_user",
           "new_list", "random_account", "serve_app", "stop_process"]
