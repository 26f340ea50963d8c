"""Settings subsystem ("ServiceConfig"): schema-declared, validated, immutable settings.

Typical use::

    from apicrud.config import load_settings
    settings = load_settings()          # defaults < APICRUD_CONFIG file < env < overrides
    settings.port, settings["log_level"], settings.sqlalchemy_url
"""

from apicrud.config.loader import ConfigError, Settings, load_settings, mask_url

__all__ = ["ConfigError", "Settings", "load_settings", "mask_url"]
