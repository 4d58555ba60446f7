"""GET /health: is the service up, which version, how big is the index."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

import matcher
from api.deps import EngineDep
from api.schemas import Health
from matcher.index import FORMAT_VERSION

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(engine: EngineDep) -> dict[str, Any]:
    loaded = engine.ensure_index()
    index = loaded.index
    return {
        "status": "ok",
        "version": matcher.__version__,
        "index": {
            "experts": index.n_experts,
            "documents": index.words_.n_docs_,
            "terms": index.words_.n_terms,
            "format_version": FORMAT_VERSION,
            "data_version": loaded.data_version,
        },
    }
