"""The names of the worker's tasks, shared by who queues them and who runs them (a
module of its own, so the task modules and the Celery app don't import each other)."""

TASK_SEND = "apicrud.send_mail"
