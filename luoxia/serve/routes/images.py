"""``POST /v1/images/generations``: images as base64 PNGs with a signed provenance record, and the
request's own safety record (it returns with the images, so concurrent requests never mix them)."""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter

from luoxia.safety.guard import GuardedImageGenerator, GuardedImages
from luoxia.safety.provenance import png_with_provenance
from luoxia.serve import schemas
from luoxia.serve.deps import CallerDep, ModelsDep, OffloadDep, SettingsDep
from luoxia.serve.errors import APIError
from luoxia.serve.responses import ImageData, Images

router = APIRouter()


@router.post("/v1/images/generations", response_model=Images)
async def images(body: schemas.ImageRequest, who: CallerDep, settings: SettingsDep, models: ModelsDep,
                 offload: OffloadDep) -> Images:
    generator = models.image_model(body.model)
    if body.n > settings.max_images:
        raise APIError(400, f"n is {body.n}; this server draws at most {settings.max_images} images", param="n")
    if isinstance(generator, GuardedImageGenerator):  # a blocked prompt is a 400 (`PromptBlocked`)
        drawn = await offload(generator.generate_guarded, body.prompt, body.n, body.seed)
        key = generator.guard.key.secret
    else:  # safety off: no checks, no watermark, still signed
        drawn = GuardedImages(await offload(generator.generate, body.prompt, body.n, body.seed), {})
        key = models.guard.key.secret
    data = [ImageData(b64_json=await offload(_png_b64, image, key, model=generator.name, run=generator.name,
                                             seed=body.seed, parameters={"prompt": body.prompt, "index": i}))
            for i, image in enumerate(drawn.images)]
    return Images(created=int(time.time()), data=data, safety=drawn.safety)


def _png_b64(image, key: bytes, **provenance) -> str:
    return base64.b64encode(png_with_provenance(image, key=key, **provenance)).decode("ascii")
