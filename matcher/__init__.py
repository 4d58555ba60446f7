"""金桥 Matcher: match enterprises' technical demands with experts and academicians."""

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
from matcher.rank import Filters
from matcher.text import ChineseTokenizer, normalize

__version__ = "0.1.0"

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
