"""Websocket routes (the live boards arrive with the real-time work)."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
