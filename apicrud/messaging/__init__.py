"""Messages to people: rendered from Jinja2 templates, sealed for the queue, sent by SMTP.

``render`` turns a template and its values into a subject and a body; ``envelope``
encrypts a rendered message while it waits in the broker or the dead-letter list (it
may hold a one-time token); ``send`` delivers it to the configured SMTP server. The
request path only renders and enqueues (:mod:`apicrud.worker.outbox`); the worker
(:mod:`apicrud.worker.tasks`) sends.
"""
