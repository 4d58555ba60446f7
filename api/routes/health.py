"""GET /health: is the service up, which version, how big is the index."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

import matcher
from api.deps import EngineDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(engine: EngineDep) -> dict[str, Any]:
    info = engine.index_info()
    return {
        "status": "ok",
        "version": matcher.__version__,
        "index": {"experts": info.experts, "documents": info.documents, "terms": info.terms,
                  "format_version": info.format_version, "data_version": info.data_version},
    }
