"""Rate limits per user and per client address, counted in Redis across instances."""

from apicrud.ratelimit.limiter import Decision, WindowLimiter
from apicrud.ratelimit.middleware import RateLimit, client_address

__all__ = ["Decision", "RateLimit", "WindowLimiter", "client_address"]
