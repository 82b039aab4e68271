"""Engagement: how much a customer is in touch with the organization, 0 to 100.

Three parts, each capped, so that no single habit dominates:
- recency (up to 50): halves every `half_life_days` since the customer's last interaction;
- contact (up to 30): distinct days with a call, email, chat or visit, up to `target_touch_days`;
- purchases (up to 20): purchases, up to `target_purchases`.
The level label reads the score: engaged (60+), cooling (25+), dormant.

Pure Python, no contract imports, so that pytest runs it natively (see test_engagement.py).
"""

import math
from dataclasses import dataclass
from typing import List, Optional

DAY_MS = 86_400_000

DEFAULTS = {
    "half_life_days": 30.0,
    "target_touch_days": 12.0,
    "target_purchases": 6.0,
    # Explanations cost a string per customer across the boundary: only when asked for.
    "explain": False,
}

LEVELS = ["engaged", "cooling", "dormant"]


class ConfigError(ValueError):
    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def check_config(config: dict) -> dict:
    """The configuration, with every number positive; a ConfigError names the bad field."""
    for key in ("half_life_days", "target_touch_days", "target_purchases"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{key} must be a number above 0, not {value!r}", key)
    if not isinstance(config["explain"], bool):
        raise ConfigError("explain must be true or false", "explain")
    return config


@dataclass
class Engagement:
    score: float
    level: str
    explanation: Optional[str]


def counted(n: float, noun: str) -> str:
    """`1 purchase`, `3 purchases`: `n` rounded to a whole number."""
    whole = round(n)
    return f"{whole} {noun}" if whole == 1 else f"{whole} {noun}s"


def level(score: float) -> str:
    return "engaged" if score >= 60 else "cooling" if score >= 25 else "dormant"


def engagement(now: int, last_at: float, touch_days: float, purchases: float, config: dict) -> Engagement:
    """One customer's engagement; NaN features (no interactions of the kind) count as none."""
    touch_days = 0.0 if math.isnan(touch_days) else touch_days
    purchases = 0.0 if math.isnan(purchases) else purchases
    if math.isnan(last_at):
        recency, days = 0.0, None
    else:
        days = max(0.0, (now - last_at) / DAY_MS)
        recency = 50.0 * 0.5 ** (days / config["half_life_days"])
    contact = 30.0 * min(touch_days / config["target_touch_days"], 1.0)
    buying = 20.0 * min(purchases / config["target_purchases"], 1.0)
    score = round(recency + contact + buying, 1)
    explanation = None
    if config["explain"]:
        seen = "no interaction yet" if days is None else f"last interaction {counted(days, 'day')} ago"
        explanation = (
            f"{seen} (+{recency:.1f}), {counted(touch_days, 'contact day')} (+{contact:.1f}), "
            f"{counted(purchases, 'purchase')} (+{buying:.1f})"
        )
    return Engagement(score, level(score), explanation)


def score_batch(now: int, last_at: List[float], touch_days: List[float], purchases: List[float], config: dict):
    """Columns in, columns out: scores, level codes (into LEVELS) and explanations (or None)."""
    results = [engagement(now, *row, config) for row in zip(last_at, touch_days, purchases)]
    scores = [r.score for r in results]
    codes = [LEVELS.index(r.level) for r in results]
    explanations = [r.explanation or "" for r in results] if config["explain"] else None
    return scores, codes, explanations
