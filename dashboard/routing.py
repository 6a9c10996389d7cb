"""Websocket routes: live boards and the agent queue."""

from __future__ import annotations

from django.urls import path

from dashboard.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/boards/<slug:slug>/", LiveConsumer.as_asgi()),
    path("ws/queue/", LiveConsumer.as_asgi()),
    path("ws/tickets/<int:pk>/", LiveConsumer.as_asgi()),
]
