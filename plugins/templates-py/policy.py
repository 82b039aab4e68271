"""A policy template: allows every write. Replace the body of `before` with your rule: return
`t.Decision_Deny(t.Denial(reason, field))`, `t.Decision_Warn(message)` or
`t.Decision_Patch([t.FieldPatch(field, json.dumps(value))])`."""

from typing import List

import wit_world
from wit_world.imports import types as t

from rapport_sdk import guarded


class WitWorld(wit_world.WitWorld):
    @guarded
    def before(self, change: t.Change) -> t.Decision:
        print(f"{change.operation.name.lower()} by {change.actor.name}")
        return t.Decision_Allow()

    @guarded
    def after(self, change: t.Change) -> List[t.Action]:
        """Follow-up actions once a write landed: tags, tasks, messages, assignments."""
        return []
