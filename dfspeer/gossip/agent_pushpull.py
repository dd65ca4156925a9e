"""Push-pull of a :class:`~dfspeer.gossip.agent.GossipAgent` (memberlist's pushPull):
full-state exchanges over TCP, at most ``MAX_OUTBOUND_STREAMS`` started and
``MAX_INBOUND_STREAMS`` served at once, each bounded by ``STREAM_TIMEOUT_S``. The
responder replies only when the request opened and merged.
"""

from __future__ import annotations

import asyncio
import logging
import time

from dfspeer.gossip.agent_base import (
    CONNECT_TIMEOUT_S,
    MAX_INBOUND_STREAMS,
    MAX_OUTBOUND_STREAMS,
    STREAM_TIMEOUT_S,
    Address,
    AgentBase,
)
from dfspeer.gossip.transport import FrameError, close_stream, read_frame, write_frame

log = logging.getLogger("dfspeer.gossip.agent")


class AgentPushPull(AgentBase):
    """:class:`~dfspeer.gossip.agent.GossipAgent` push-pull streams, both ways."""

    # ------------------------------------------------------------------ push-pull
    def _start_push_pull(self, target: Address) -> None:
        if self._stopped:
            return
        key = (str(target[0]), int(target[1]))
        if key in self._outbound or self._is_self(key):
            return
        if len(self._outbound) >= MAX_OUTBOUND_STREAMS:
            self.counters["push_pull.skipped"] += 1
            return
        self._outbound.add(key)
        self._spawn(self._push_pull(key), "gossip-push-pull")

    async def _push_pull(self, target: Address) -> None:
        """Send our full state to ``target`` and merge its reply (memberlist pushPull)."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                reader, stream = await asyncio.wait_for(
                    asyncio.open_connection(*target), timeout=CONNECT_TIMEOUT_S
                )
                writer = stream
                await write_frame(stream, self.swim.local_state())
                reply = await read_frame(reader)
            ok = self.swim.merge_state(reply, time.time())
            self.counters["push_pull.ok" if ok else "push_pull.rejected"] += 1
            self._flush()
        except (OSError, TimeoutError, FrameError, asyncio.IncompleteReadError) as exc:
            self.counters["push_pull.failed"] += 1
            log.debug("push-pull with %s failed: %r", target, exc)
        finally:
            self._outbound.discard(target)
            if writer is not None:
                await close_stream(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one push-pull: merge the caller's state, reply with ours."""
        task = asyncio.current_task()
        if self._stopped or self._inbound >= MAX_INBOUND_STREAMS or task is None:
            self.counters["push_pull.refused"] += 1
            await close_stream(writer)
            return
        self._inbound += 1
        self._tasks.add(task)
        try:
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                request = await read_frame(reader)
                if not self.swim.merge_state(request, time.time()):
                    self.counters["push_pull.rejected"] += 1
                    return
                self._flush()
                await write_frame(writer, self.swim.local_state())
            self.counters["push_pull.served"] += 1
        except (OSError, TimeoutError, FrameError, asyncio.IncompleteReadError) as exc:
            self.counters["push_pull.failed"] += 1
            log.debug("push-pull served to %s failed: %r", writer.get_extra_info("peername"), exc)
        finally:
            self._inbound -= 1
            self._tasks.discard(task)
            await close_stream(writer)
