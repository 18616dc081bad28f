"""An operator's transitions: cancel an item, put a failed one back, take a lease away.

Each runs one statement that decides (it changes nothing when the item is in the wrong
status, and then the status read after it names the refusal) and one history row.
"""

from __future__ import annotations

from nexus.storage.calls import Body
from nexus.work.context import QueueContext
from nexus.work.items import CANCELLABLE


class Control:
    """cancel_work, retry_work, revoke_lease."""

    def __init__(self, ctx: QueueContext) -> None:
        self.ctx = ctx
        self.driver = ctx.driver

    def cancel(self, ref: str) -> None:
        def body() -> Body[None]:
            now = self.driver.timestamp(self.ctx.now())
            item = yield from self.ctx.require_item(ref)
            changed = yield self.driver.call("cancel", {"path_id": item["path_id"], "now": now})
            if not changed.rows:
                raise (yield from self.ctx.wrong_state(ref, CANCELLABLE, "cancel_work"))
            yield from self.ctx.record(
                [(item["path_id"], "cancelled", None, {"from": item["status"]})], now
            )

        self.ctx.run(body)

    def retry(self, ref: str) -> None:
        def body() -> Body[None]:
            now = self.driver.timestamp(self.ctx.now())
            item = yield from self.ctx.require_item(ref)
            changed = yield self.driver.call("retry", {"path_id": item["path_id"]})
            if changed.rowcount != 1:
                raise (yield from self.ctx.wrong_state(ref, ("failed",), "retry_work"))
            yield from self.ctx.record([(item["path_id"], "requeued", None, None)], now)

        self.ctx.run(body)

    def revoke(self, ref: str) -> None:
        def body() -> Body[None]:
            now = self.driver.timestamp(self.ctx.now())
            item = yield from self.ctx.require_item(ref)
            changed = (yield self.driver.call("revoke", {"path_id": item["path_id"]})).first()
            if changed is None:
                raise (yield from self.ctx.wrong_state(ref, ("in_progress",), "revoke_lease"))
            yield from self.ctx.record(
                [(item["path_id"], "released", changed["worker_id"], {"by": "operator"})], now
            )

        self.ctx.run(body)
