"""/v1/watermark/detect reports the scheme, the text's length and a verdict (issue 14 item 5)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from luoxia.serve.app import create_app
from tests.echo import LOOPBACK, echo_models, echo_settings


def test_detection_names_scheme_length_and_verdict(tmp_path):
    settings = echo_settings(tmp_path, open_access=True)
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
        reply = client.post("/v1/watermark/detect", json={"model": "echo", "text": "To be or not to be"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["scheme"] == "kgw-prev1" and body["tokens"] == 18 and body["verdict"] == "not watermarked"
    assert body["watermarked"] is False and body["min_tokens"] is None and body["entropy_threshold"] == 0.0
    assert body["z_threshold"] == 4.0  # the default policy's, which the studio draws the z-score against
