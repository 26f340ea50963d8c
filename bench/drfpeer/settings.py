"""Django settings of the peer, from the benchmark's environment."""

import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = os.environ.get("BENCH_SECRET_KEY", "bench-drf-peer")
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = False  # apicrud stores naive UTC
USE_I18N = False
ROOT_URLCONF = "drfpeer.urls"
APPEND_SLASH = False
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework",
                  "django_filters", "drfpeer"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"


def _database(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.split(":///", 1)[1],
                "CONN_MAX_AGE": None, "OPTIONS": {"timeout": 30}}
    u = urlsplit(url)
    return {"ENGINE": "django.db.backends.postgresql", "NAME": u.path.lstrip("/"),
            "USER": unquote(u.username or ""), "PASSWORD": unquote(u.password or ""),
            "HOST": u.hostname or "", "PORT": str(u.port or ""),
            "CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": False}


DATABASES = {"default": _database(os.environ.get("BENCH_DB_URL", "sqlite:////tmp/none.db"))}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"),
                      "KEY_PREFIX": "drf"}}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["drfpeer.auth.CachedTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
    "UNAUTHENTICATED_USER": None,
    "COMPACT_JSON": True,
}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "root": {"level": "WARNING", "handlers": []}}
