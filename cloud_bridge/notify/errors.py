"""The one error a channel raises: the chain catches it, logs it and retries later."""

from __future__ import annotations


class ChannelError(Exception):
    """A channel could not deliver a notification (server down, refused, timed out)."""

    def __init__(self, channel: str, reason: str) -> None:
        super().__init__(f"channel {channel!r}: {reason}")
        self.channel = channel
        self.reason = reason
