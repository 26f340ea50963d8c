"""The messaging worker: Celery on the configured broker (``apicrud worker``).

``celery_app`` builds the Celery application from settings, ``outbox`` is the API
side that queues messages, ``tasks`` the worker side that sends them by SMTP.
"""
