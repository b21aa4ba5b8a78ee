"""The moderation head: a missing or corrupt one is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from luoxia.errors import CheckpointError
from luoxia.models.moderation_head import ModerationHead


def test_missing_or_corrupt_classifier_is_a_clear_error(tmp_path: Path):
    with pytest.raises(CheckpointError, match="luoxia train configs/safety/moderation.yaml"):
        ModerationHead.load(tmp_path)
    (tmp_path / "head.safetensors").write_bytes(b"not safetensors")
    (tmp_path / "head.json").write_text("{}", encoding="utf-8")
    with pytest.raises(CheckpointError, match="corrupt"):
        ModerationHead.load(tmp_path)
