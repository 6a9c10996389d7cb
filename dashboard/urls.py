from __future__ import annotations

from django.urls import path

from dashboard import kiosk, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("boards/", views.boards, name="boards"),
    path("boards/<slug:slug>/", views.board, name="board"),
    path("boards/<slug:slug>/kiosk", kiosk.exchange, name="board_kiosk"),
    path("queue/", views.queue, name="queue"),
    path("t/<int:pk>", views.short_link, name="short_link"),
    path("tickets/<int:pk>/", views.ticket, name="ticket"),
    path("tickets/<int:pk>/grab", views.grab, name="grab"),
    path("tickets/<int:pk>/release", views.release, name="release"),
    path("tickets/<int:pk>/take-over", views.take_over, name="take_over"),
    path("tickets/<int:pk>/reassign", views.reassign, name="reassign"),
    path("tickets/<int:pk>/<str:action>", views.act, name="act"),
    path("clocks/<int:pk>/acknowledge", views.acknowledge_clock, name="acknowledge_clock"),
    path("ack/<str:token>/", views.acknowledge_link, name="acknowledge"),
]
