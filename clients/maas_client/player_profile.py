"""How often a player calls the models: the load test plays it, `maas plan` sizes servers by it.

One source for both, so that a plan and the load test that checks it assume the same player.
"""

from __future__ import annotations

# A player reads the reply, thinks, types: seconds between one answer and the next request.
THINK_TIME_S = (0.5, 2.0)
# In play, people talk about three times as often as they draw a rune.
TALK_WEIGHT = 3
DRAW_WEIGHT = 1


def mean_think_s() -> float:
    """Locust's `between(a, b)` waits uniformly, so the mean is the midpoint."""
    low, high = THINK_TIME_S
    return (low + high) / 2


def requests_per_player_s() -> dict[str, float]:
    """Talk turns and drawings per second that one concurrent player asks for (the think time
    alone: counting the reply's own latency would lower the rate, so this errs on the safe side).
    """
    total = TALK_WEIGHT + DRAW_WEIGHT
    rate = 1 / mean_think_s()
    return {"talk": rate * TALK_WEIGHT / total, "draw": rate * DRAW_WEIGHT / total}
