"""Model prices: what a catalog entry costs, in US dollars per million input and output tokens.

Providers publish prices in a few shapes; ``parse_price`` reads the ones that carry them:

- OpenRouter: ``"pricing": {"prompt": "0.000003", "completion": "0.000015"}`` (per token, as strings);
- per-million tables (Together and others): ``"pricing": {"input": 3, "output": 15}``;
- the plugin's own shape: ``"price": {"input": 3, "output": 15}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PER_MILLION = 1_000_000
MAX_PRICE = 1e6  # dollars per million tokens: anything above is a provider's placeholder, not a price


@dataclass(frozen=True)
class Price:
    """Dollars per million input (prompt) and output (completion) tokens."""

    input: float
    output: float

    @property
    def total(self) -> float:
        """What a comparison uses: input plus output, so a cheaper prompt cannot hide a dearer reply."""
        return self.input + self.output

    def to_json(self) -> dict[str, float]:
        return {"input": self.input, "output": self.output}


def _number(value: Any) -> float | None:
    """A non-negative finite number from a JSON number or numeric string; None otherwise ("-1" = variable)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 <= value <= MAX_PRICE else None


def parse_price(item: Any) -> Price | None:
    """The price a catalog item carries, or None when it carries none we can read."""
    if not isinstance(item, dict):
        return None
    for key in ("price", "pricing"):
        table = item.get(key)
        if isinstance(table, Price):
            return table
        if not isinstance(table, dict):
            continue
        if "prompt" in table or "completion" in table:  # OpenRouter: dollars per token
            prompt, completion = _number(table.get("prompt")), _number(table.get("completion"))
            if prompt is None or completion is None:
                continue
            price = Price(round(prompt * PER_MILLION, 6), round(completion * PER_MILLION, 6))
            return price if price.total <= 2 * MAX_PRICE else None
        low, high = _number(table.get("input")), _number(table.get("output"))
        if low is not None and high is not None:
            return Price(low, high)
    return None


def ratio(stored: Price | None, proposed: Price | None) -> float | None:
    """How many times the stored model's price the proposed one costs; None when either is unknown."""
    if stored is None or proposed is None:
        return None
    if stored.total == 0:
        return 1.0 if proposed.total == 0 else math.inf
    return proposed.total / stored.total
