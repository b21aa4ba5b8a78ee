"""What the monitor's tests share: a keyword sentiment stand-in, a replayed stream with one burst, and
a monitor application directory served with them (no encoder, no classifier: fast)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from luoxia.apps.monitor import build_monitor, load_monitor
from luoxia.apps.monitor_stream import Burst, Item, read_labelled, simulate_stream
from luoxia.apps.registry import APPS
from luoxia.apps.sentiment import LABELS

START = datetime(2026, 1, 5, tzinfo=UTC)
NEGATIVE_WORDS = ("slide", "misses", "downgrade", "recall", "probe", "sued", "fall", "drops", "layoffs", "plunges",
                  "cuts", "slump")
SOURCE = "keywords (test)"


def keyword_sentiment(texts):
    """A stand-in classifier: negative when a negative word occurs, else neutral ((N, 3) in LABELS order)."""
    out = np.zeros((len(texts), len(LABELS)))
    for row, text in enumerate(texts):
        out[row, LABELS.index("negative" if any(w in text.lower() for w in NEGATIVE_WORDS) else "neutral")] = 0.9
    return out + 0.05


ONE_BURST = (Burst("ACME", at=10.0),)  # 40 negative items about $ACME from 10:00 to 10:30


def stream(seed: int = 0, bursts=ONE_BURST) -> list[Item]:
    """The sample shipped with Luoxia, eight times over, at 12 items an hour (about 25 hours)."""
    texts, labels = read_labelled()
    return simulate_stream(texts * 8, labels * 8, START, rate=12.0, bursts=bursts, seed=seed)


def monitor_app_dir(path: Path, monkeypatch, **settings) -> Path:
    """A monitor directory whose loader (patched in `APPS` for this test) uses `keyword_sentiment`."""
    build_monitor(path, {"similarity": False, **settings})
    monkeypatch.setitem(APPS, "monitor", lambda folder, context: load_monitor(
        folder, context.guard, sentiment=keyword_sentiment, source=SOURCE))
    return path
