"""The engagement rules, natively: `target/py/bin/python -m pytest plugins/python`."""

import math

import pytest

from engagement import DAY_MS, DEFAULTS, ConfigError, check_config, engagement, score_batch

NOW = 1_767_225_600_000
EXPLAIN = {**DEFAULTS, "explain": True}


def test_recency_halves_every_half_life():
    fresh = engagement(NOW, NOW, 0, 0, DEFAULTS).score
    month = engagement(NOW, NOW - 30 * DAY_MS, 0, 0, DEFAULTS).score
    assert fresh == 50.0
    assert month == 25.0


def test_each_part_is_capped():
    busy = engagement(NOW, NOW, 1_000, 1_000, DEFAULTS)
    assert busy.score == 100.0
    assert busy.level == "engaged"


def test_no_interactions_scores_zero_and_says_so():
    nobody = engagement(NOW, math.nan, math.nan, math.nan, EXPLAIN)
    assert nobody.score == 0.0
    assert nobody.level == "dormant"
    assert nobody.explanation == "no interaction yet (+0.0), 0 contact days (+0.0), 0 purchases (+0.0)"


def test_explanations_count_in_words_and_only_when_asked():
    one = engagement(NOW, NOW - DAY_MS, 1, 1, EXPLAIN)
    assert one.explanation.startswith("last interaction 1 day ago (+48.9), 1 contact day (+2.5), 1 purchase (+3.3)")
    assert engagement(NOW, NOW - DAY_MS, 1, 1, DEFAULTS).explanation is None


def test_levels_follow_the_score():
    scores, codes, explanations = score_batch(
        NOW, [NOW, NOW - 60 * DAY_MS, math.nan], [12, 2, 0], [6, 1, 0], DEFAULTS
    )
    assert scores == [100.0, 20.8, 0.0]
    assert codes == [0, 2, 2]
    assert explanations is None


@pytest.mark.parametrize("field,value", [("half_life_days", 0), ("target_purchases", -1), ("target_touch_days", "12")])
def test_bad_numbers_name_their_setting(field, value):
    with pytest.raises(ConfigError) as e:
        check_config({**DEFAULTS, field: value})
    assert e.value.field == field
