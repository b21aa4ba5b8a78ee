"""The endpoints, one module per resource: OpenAI's (models, completions, chat completions, images,
moderations, embeddings) and Luoxia's own (watermark detection, redaction, history, review, runs,
health, metrics). Each takes what it needs through `luoxia.serve.deps`."""

from __future__ import annotations

from fastapi import APIRouter

from luoxia.serve.routes import (
    chat,
    completions,
    embeddings,
    history,
    images,
    moderation,
    monitor,
    recommend,
    review,
    runs,
    summarize,
    system,
    write,
)

ROUTERS: tuple[APIRouter, ...] = (system.router, completions.router, chat.router, images.router, moderation.router,
                                  embeddings.router, history.router, review.router, runs.router, monitor.router,
                                  recommend.router, write.router, summarize.router)
