"""Static group membership against the real broker (hotdeal_core/messaging/membership.py,
measured by devtools/membership.py): a consumer process killed with SIGKILL and restarted
under the same CONSUMER_INSTANCE_ID gets its partitions back at once, and the other member
of the group goes through no rebalance at all."""

from __future__ import annotations

import time

from devtools.membership import Member, fed_topic, settled_pair
from hotdeal_core.settings import Settings
from tests.waiting import eventually

# A rebalance would stall the group this long (the dead member's session must expire first);
# the restart must be back well within it.
SESSION_MS = 15_000
BACK_WITHIN_S = SESSION_MS / 1000 / 2


async def test_a_static_member_killed_and_restarted_resumes_its_partitions_without_a_rebalance(
        ) -> None:
    async with fed_topic(Settings()) as topic:
        group = f"{topic}-group"
        first, other = await settled_pair(topic, group, static=True, session_ms=SESSION_MS)
        held, kept = first.assigned(), other.assigned()
        killed_at = time.time()
        await first.kill()
        again = await Member(topic, group, first.instance_id, SESSION_MS).start()
        try:
            async def resumed() -> bool:
                return held <= again.consumed_since(killed_at)
            await eventually(resumed, BACK_WITHIN_S, "the restarted member to consume")
            assert again.assigned() == held
            # The other member kept its partitions throughout, and kept consuming them.
            assert not other.rebalanced_since(killed_at), other.events[-5:]
            assert other.assigned() == kept and kept <= other.consumed_since(killed_at)
        finally:
            await again.kill()
            await other.kill()
