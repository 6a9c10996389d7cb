from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from django.conf import settings


@pytest.fixture
def now() -> datetime:
    """A fixed 'now' (a Tuesday, 10:00 UTC) passed down to actions, as production code does."""
    return datetime(2026, 11, 17, 10, 0, tzinfo=UTC)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The real Redis at REDIS_URL (the test command points it at database 15), emptied."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Hashing strength is not under test; PBKDF2's cost would dominate the suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def live_redis(redis_client: Any) -> Iterator[Any]:
    """Real Redis with slaboard's live-screen keys cleared."""
    for key in redis_client.scan_iter("slaboard*"):
        redis_client.delete(key)
    yield redis_client
