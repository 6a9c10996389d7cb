"""Bearer tokens from the admin: stored hashed, revocable, rate limited per token."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

import redis
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from tickets.api.errors import RateLimited
from tickets.models import (
    ApiToken,
    hash_token,
)

log = logging.getLogger(__name__)


class TokenAuth(HttpBearer):
    """Bearer tokens from the admin; stored hashed; revocable; rate limited per token."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        api_token = (
            ApiToken.objects.select_related("partner")
            .filter(token_hash=hash_token(token), revoked_at__isnull=True)
            .first()
        )
        if api_token is None:
            return None
        now = timezone.now()
        if api_token.last_used_at is None or now - api_token.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
        check_rate(api_token, now)
        return api_token


_rate_client: redis.Redis | None = None


def key_prefix() -> str:
    """The install's Redis key prefix (``CHANNEL_PREFIX``, as every other slaboard key): two
    installs sharing one Redis must not share rate-limit counters."""
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    return str(config.get("prefix", "slaboard"))


def check_rate(token: ApiToken, now: datetime) -> None:
    """A fixed one-minute window per token in Redis. Redis down: allow (and log)."""
    global _rate_client
    if _rate_client is None:
        _rate_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1)
    minute = int(now.timestamp() // 60)
    key = f"{key_prefix()}:rate:{token.pk}:{minute}"
    try:
        pipe = _rate_client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count = int(pipe.execute()[0])
    except redis.RedisError as error:
        log.warning("rate limit not checked (Redis unavailable): %s", error)
        return
    if count > token.requests_per_minute:
        raise RateLimited(retry_after=60 - int(now.timestamp()) % 60)


def request_token(request: HttpRequest) -> ApiToken:
    token = request.auth  # type: ignore[attr-defined]
    assert isinstance(token, ApiToken)
    return token
