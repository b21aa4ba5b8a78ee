"""Burst detectors for the financial monitor: per topic, the count of negative items in each window
against its own exponentially weighted baseline.

The default is an EWMA z-score (``ewma``): the baseline mean and variance of a topic's negative count
are exponentially weighted averages over past windows, and a window's score is its z-score against
them, the variance floored at the mean (a count's Poisson variance) and at ``min_variance``, so a
quiet topic is not alarmed by two negative items. It is chosen because the bursts it is for
(dozens of negative items about one name within half an hour) are large and abrupt: a one-window
z-score flags them at the end of the first window they fill, and its threshold reads as "so many
standard deviations above normal". ``cusum`` (Page's CUSUM over the same z-scores, ``S = max(0, S
+ z - k)``, alert when ``S >= h``, reset after an alert) is offered for slow, sustained rises a
single window misses, at the price of a later alarm on sudden ones; bench/apps_monitor.py measures both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

DetectorName = Literal["ewma", "cusum"]


@dataclass
class TopicState:
    """A topic's baseline: EWMA of its negative count and volume per window, the variance of the
    negative count, the CUSUM sum, the last window folded in and how many windows it has seen."""

    mean: float = 0.0
    var: float = 0.0
    volume: float = 0.0
    cusum: float = 0.0
    last: int | None = None
    seen: int = 0


@dataclass
class Verdict:
    score: float
    baseline: float  # the expected negative count before this window
    baseline_share: float  # the expected negative share before this window
    alert: bool


@dataclass
class Detector:
    """Scores windows (negative count, volume) of one topic against its `TopicState`, updating it."""

    name: DetectorName = "ewma"
    alpha: float = 0.1  # weight of the newest window in the baselines
    threshold: float = 4.0  # ewma: the z-score that alerts
    k: float = 0.5  # cusum: allowance subtracted from each z-score
    h: float = 5.0  # cusum: the sum that alerts
    min_negative: int = 8  # a window with fewer negative items never alerts
    min_share: float = 0.4  # nor one whose negative share is below this
    min_variance: float = 1.0  # the variance floor of the baseline negative count
    warmup: int = 0  # windows a topic must have seen before it may alert

    def _fold(self, state: TopicState, negative: float, volume: float) -> None:
        delta = negative - state.mean
        state.mean += self.alpha * delta
        state.var = (1 - self.alpha) * (state.var + self.alpha * delta * delta)
        state.volume += self.alpha * (volume - state.volume)

    def skip_to(self, state: TopicState, window: int) -> None:
        """Fold in the empty windows between the state's last one and ``window`` (exclusive), in closed
        form: k windows of 0 scale the means by r^k (r = 1 - alpha) and the variance to
        r^k (var + mean^2 (1 - r^k)); CUSUM counts each as a z-score of 0 (it drops by k)."""
        if state.last is None or window - state.last <= 1:
            return
        gaps = window - state.last - 1
        decay = (1 - self.alpha) ** gaps
        state.var = decay * (state.var + state.mean * state.mean * (1 - decay))
        state.mean *= decay
        state.volume *= decay
        state.cusum = max(0.0, state.cusum - self.k * gaps)

    def update(self, state: TopicState, window: int, negative: int, volume: int) -> Verdict:
        """Score one window (after `skip_to`) and fold it into the baseline."""
        self.skip_to(state, window)
        sd = math.sqrt(max(state.var, state.mean, self.min_variance))
        z = (negative - state.mean) / sd
        baseline = state.mean
        baseline_share = state.mean / state.volume if state.volume > 0 else 0.0
        if self.name == "cusum":
            state.cusum = max(0.0, state.cusum + z - self.k)
            score, fired = state.cusum, state.cusum >= self.h
        else:
            score, fired = z, z >= self.threshold
        share = negative / volume if volume else 0.0
        alert = fired and negative >= self.min_negative and share >= self.min_share and state.seen >= self.warmup
        if alert and self.name == "cusum":
            state.cusum = 0.0
        self._fold(state, float(negative), float(volume))
        state.last, state.seen = window, state.seen + 1
        return Verdict(round(score, 4), round(baseline, 4), round(baseline_share, 4), alert)


def score_windows(counts: Iterable[tuple[int, str, int, int]], detector: Detector,
                  state_of: Callable[[str], TopicState]) -> list[tuple[str, int, int, int, Verdict]]:
    """Score closed windows in order: ``counts`` is (window, topic, volume, negative) sorted by
    window then topic; ``state_of(topic)`` the (mutable) baseline to update. Every window's
    (topic, window, volume, negative, verdict) — the app's and the benchmark's one path."""
    return [(topic, window, volume, negative, detector.update(state_of(topic), window, negative, volume))
            for window, topic, volume, negative in counts]
