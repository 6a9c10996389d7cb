"""Writes about boards: kiosk links. Screens on a rotated or revoked link are cut off."""

from __future__ import annotations

import secrets

from django.db import transaction

from dashboard.models import Board
from dashboard.publish import announce_kiosk_change


def rotate_kiosk_link(board: Board) -> str:
    """Give the board a new kiosk secret (the old link stops working at once); return it."""
    board.kiosk_token = secrets.token_urlsafe(32)
    board.save(update_fields=["kiosk_token", "updated_at"])
    _announce(board)
    return board.kiosk_token


def revoke_kiosk_link(board: Board) -> None:
    board.kiosk_token = ""
    board.save(update_fields=["kiosk_token", "updated_at"])
    _announce(board)


def _announce(board: Board) -> None:
    """Screens on the old link are closed (after commit, through the channel layer)."""
    board_id, token = board.pk, board.kiosk_token
    transaction.on_commit(lambda: announce_kiosk_change(board_id, token))
