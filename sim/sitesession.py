"""A session of the simulated site: what Moodle keeps per MoodleSession cookie."""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from dataclasses import dataclass, field

TOKEN_ALPHABET = string.ascii_letters + string.digits


def new_sesskey() -> str:
    """Moodle's sesskey: random_string(10), letters and digits."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(10))


@dataclass
class Session:
    sid: str
    userid: int | None = None
    logintoken: str | None = None
    last_access: float = field(default_factory=time.monotonic)
    timed_out: bool = False
    error: str | None = None
    force_password_change: bool = False
    sesskey: str = field(default_factory=lambda: new_sesskey())
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: int = 0
    drafts: set = field(default_factory=set)  # (message, attachments) draft item ids handed out by forms
