"""A connexion 3 application with apicrud's resources mounted beside its own API.

``greetings.yaml`` is an ordinary connexion API (its handlers in ``greetings.py``, its
validation and security connexion's); ``add_apicrud_api`` mounts the apicrud project in
this folder (``openapi/``, ``models.py``, ``rbac.yaml``) at its ``base_url``, /api/v1.

    uvicorn --factory app:create --port 8080
"""

from __future__ import annotations

import os

import connexion

import greetings
from apicrud.connexion_mount import add_apicrud_api

HERE = os.path.dirname(os.path.abspath(__file__))


def create() -> connexion.FlaskApp:
    cx_app = connexion.FlaskApp(__name__, specification_dir=HERE)
    cx_app.add_api("greetings.yaml")
    apicrud_app = add_apicrud_api(cx_app, HERE)
    # the greetings API's bearer check reads apicrud's sessions (greetings.token_info)
    greetings.SESSIONS = apicrud_app.extensions["apicrud"].sessions
    return cx_app
