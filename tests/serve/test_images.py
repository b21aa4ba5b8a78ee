"""Concurrent image requests each get their own safety record, through the HTTP route."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import Guard, GuardedImageGenerator, GuardPolicy
from luoxia.safety.moderation import Moderator
from luoxia.serve.app import create_app
from luoxia.serve.deps import get_models
from luoxia.serve.models import Models
from luoxia.serve.settings import ServeSettings
from tests.safety.test_guard import KEY, BarrierDrawer


def test_concurrent_image_requests_each_get_their_own_safety_record(tmp_path: Path):
    """Both requests are inside the generator at once (a barrier); one prompt is allowed, the other
    flagged: each response carries its own prompt's decision."""
    settings = ServeSettings(data_dir=tmp_path, open_access=True)
    models = Models(settings)
    guard = Guard(GuardPolicy(actions={"violence": "flag"}), Moderator(classifier=None), AuditStore(tmp_path), KEY)
    models.images["drawer"] = GuardedImageGenerator(BarrierDrawer(), guard)
    app = create_app(settings, Models(settings))
    app.dependency_overrides[get_models] = lambda: models  # the served models, swapped in
    prompts = ["7", "we will kill you"]
    # open access is served to loopback only: the test client says it is on 127.0.0.1
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client, \
            ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda p: client.post("/v1/images/generations", json={"prompt": p, "seed": 0}),
                                prompts))
    assert [r.status_code for r in replies] == [200, 200]
    (calm,), (violent,) = (r.json()["safety"]["decisions"] for r in replies)
    assert (calm["action"], calm.get("categories")) == ("allow", None)
    assert (violent["action"], violent["categories"]) == ("flag", ["violence"])
    assert all(len(r.json()["data"]) == 1 and r.json()["safety"]["watermark"]["key_id"] == KEY.key_id for r in replies)
