"""The engagement scorer, written in Python: the contract's side of `engagement.py`."""

import wit_world
from wit_world.imports import types as t

import rapport_sdk
from rapport_sdk import PluginError, guarded
from engagement import DEFAULTS, LEVELS, ConfigError, check_config, score_batch

# Contact days count the touches a person makes with the organization; purchases count apart.
CONTACT = [t.InteractionKind_Call(), t.InteractionKind_Email(), t.InteractionKind_Chat(), t.InteractionKind_Visit()]
FEATURES = [
    t.Feature(name="last_at", measure=t.Measure.LAST_AT, kinds=[], since=None, until=None),
    t.Feature(name="touch_days", measure=t.Measure.DISTINCT_DAYS, kinds=CONTACT, since=None, until=None),
    t.Feature(name="purchases", measure=t.Measure.COUNT, kinds=[t.InteractionKind_Purchase()], since=None, until=None),
]


def settings() -> dict:
    try:
        return check_config(rapport_sdk.config(DEFAULTS))
    except ConfigError as e:
        raise PluginError(str(e), e.field)


class WitWorld(wit_world.WitWorld):
    @guarded
    def describe(self) -> t.ScorerSpec:
        settings()
        return t.ScorerSpec(
            features=FEATURES,
            scores=[
                t.ScoreDef(
                    name="engagement",
                    description="0-100: recency of the last interaction, contact days and purchases",
                )
            ],
            labels=["level"],
            needs_fit=False,
        )

    @guarded
    def fit(self, population: t.FeatureBatch) -> bytes:
        return b""

    @guarded
    def score(self, batch: t.FeatureBatch, model: bytes) -> t.ScoreBatch:
        config = settings()
        columns = {c.name: c.values for c in batch.columns}
        missing = [f.name for f in FEATURES if f.name not in columns]
        if missing:
            raise PluginError(f"the host sent no `{missing[0]}` column")
        scores, codes, explanations = score_batch(
            batch.now, columns["last_at"], columns["touch_days"], columns["purchases"], config
        )
        engaged = sum(1 for c in codes if c == 0)
        print(f"scored {len(scores)} customers, {engaged} engaged")
        return t.ScoreBatch(
            scores=[t.Column(name="engagement", values=scores)],
            labels=[t.LabelColumn(name="level", categories=LEVELS, codes=codes)],
            explanations=[] if explanations is None else [t.TextColumn(name="engagement", values=explanations)],
        )
