"""Push messages through a Flower Grid and collect the replies by message id.

Like ``Grid.send_and_receive``, but polls every half second (instead of every 3 s) and
keeps each reply next to the message it answers, so missing replies can be named.
"""

from __future__ import annotations

import time

from flwr.app import Message
from flwr.serverapp import Grid

POLL_SECONDS = 0.5


def exchange(grid: Grid, messages: list[Message], timeout: float | None) -> list[Message | None]:
    """Send ``messages``; return their replies in the same order, None where none arrived in
    time. Replies include Flower's error replies (e.g. the destination node went offline)."""
    if not messages:
        return []
    return collect(grid, list(grid.push_messages(messages)), timeout)


def collect(grid: Grid, ids: list[str], timeout: float | None) -> list[Message | None]:
    """The replies to already pushed messages ``ids``, in order (None: not within ``timeout``)."""
    pending = set(ids)
    replies: dict[str, Message] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending and (deadline is None or time.monotonic() < deadline):
        for reply in grid.pull_messages(list(pending)):
            replies[reply.metadata.reply_to_message_id] = reply
            pending.discard(reply.metadata.reply_to_message_id)
        if pending:
            time.sleep(POLL_SECONDS)
    return [replies.get(mid) for mid in ids]
