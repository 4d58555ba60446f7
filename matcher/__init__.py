"""金桥 Matcher: match enterprises' technical demands with experts and academicians.

The public names below are imported when first used (PEP 562), so that `import matcher.config`
and `matcher --help` load neither jieba nor the store (tests/test_docs.py checks it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOME = {
    "AuthError": "matcher.errors",
    "ChineseTokenizer": "matcher.text",
    "DataImportError": "matcher.errors",
    "Demand": "matcher.models",
    "Document": "matcher.models",
    "Engine": "matcher.engine",
    "Evidence": "matcher.models",
    "Expert": "matcher.models",
    "Explanation": "matcher.models",
    "Filters": "matcher.ranking.filters",
    "IndexStateError": "matcher.errors",
    "InputError": "matcher.errors",
    "Match": "matcher.models",
    "MatcherError": "matcher.errors",
    "NotFoundError": "matcher.errors",
    "PayloadTooLargeError": "matcher.errors",
    "Settings": "matcher.config",
    "StoreError": "matcher.errors",
    "get_settings": "matcher.config",
    "normalize": "matcher.text",
}

__all__ = [
    "AuthError",
    "ChineseTokenizer",
    "DataImportError",
    "Demand",
    "Document",
    "Engine",
    "Evidence",
    "Expert",
    "Explanation",
    "Filters",
    "IndexStateError",
    "InputError",
    "Match",
    "MatcherError",
    "NotFoundError",
    "PayloadTooLargeError",
    "Settings",
    "StoreError",
    "get_settings",
    "normalize",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'matcher' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from matcher.config import Settings, get_settings
    from matcher.engine import Engine
    from matcher.errors import (
        AuthError,
        DataImportError,
        IndexStateError,
        InputError,
        MatcherError,
        NotFoundError,
        PayloadTooLargeError,
        StoreError,
    )
    from matcher.models import Demand, Document, Evidence, Expert, Explanation, Match
    from matcher.ranking.filters import Filters
    from matcher.text import ChineseTokenizer, normalize
