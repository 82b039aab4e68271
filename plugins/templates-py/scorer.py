"""A scorer template: one score, the number of purchases. Ask for the features you need in
`describe`; compute your scores column by column in `score`."""

import wit_world
from wit_world.imports import types as t

from rapport_sdk import PluginError, guarded


class WitWorld(wit_world.WitWorld):
    @guarded
    def describe(self) -> t.ScorerSpec:
        return t.ScorerSpec(
            features=[
                t.Feature(
                    name="purchases",
                    measure=t.Measure.COUNT,
                    kinds=[t.InteractionKind_Purchase()],
                    since=None,
                    until=None,
                )
            ],
            scores=[t.ScoreDef(name="purchases", description="number of purchases")],
            labels=[],
            needs_fit=False,
        )

    @guarded
    def fit(self, population: t.FeatureBatch) -> bytes:
        """Only called when `needs_fit` is set: fit a model on the whole organization."""
        return b""

    @guarded
    def score(self, batch: t.FeatureBatch, model: bytes) -> t.ScoreBatch:
        purchases = next((c for c in batch.columns if c.name == "purchases"), None)
        if purchases is None:
            raise PluginError("the host sent no `purchases` column")
        return t.ScoreBatch(scores=[t.Column(name="purchases", values=purchases.values)], labels=[], explanations=[])
