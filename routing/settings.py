"""Settings of the routing layer: validated once, passed in (never a module-level singleton)."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

_ROOT = Path(__file__).resolve().parent.parent


def _package_dir() -> Path:
    return Path(__file__).resolve().parent


class LlmSettings(BaseModel):
    """The optional second backend: an OpenAI-compatible chat endpoint that rewrites retrieved entries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False  # off by default: retrieval answers are reviewed text, an LLM reply is not
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "gpt-4o-mini"
    api_key: SecretStr = SecretStr("")
    timeout_s: float = Field(default=4.0, gt=0, le=60)  # a caller on the line will not wait longer
    max_tokens: int = Field(default=200, ge=16, le=4000)
    temperature: float = Field(default=0.2, ge=0, le=2)
    entries: int = Field(default=2, ge=1, le=5)  # how many retrieved entries ground the reply

    @model_validator(mode="after")
    def _check_url(self) -> "LlmSettings":
        if self.enabled and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("llm.base_url must start with http:// or https://")
        return self


class RoutingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- data files (supervisors edit these; validated at start-up) ---
    knowledge_dir: Path = Field(default_factory=lambda: _package_dir() / "knowledge")
    prompts_path: Path = Field(default_factory=lambda: _ROOT / "prompts" / "prompts.yaml")
    # Demonstration work-permit applications: what `hotline ask` looks up, and what an empty main store is filled
    # with at the server's start (real ones come in with `hotline applications import FILE`).
    applications_path: Path = Field(default_factory=lambda: _package_dir() / "data" / "applications.yaml")
    # KB embeddings are cached here, keyed by a hash of the KB text and the model (load: seconds -> milliseconds).
    cache_dir: Path | None = Field(default_factory=lambda: _ROOT / "var" / "cache" / "routing")

    # --- retrieval ---
    use_embeddings: bool = True
    use_pinyin: bool = True
    embedding_threads: int = Field(default=1, ge=1, le=64)  # one core per decision (the 30 ms budget is per core)
    max_input_chars: int = Field(default=600, ge=50, le=20000)  # longer text is cut: a spoken question is short
    weight_embedding: float = Field(default=0.5, ge=0)
    weight_answer: float = Field(default=0.3, ge=0)
    weight_bm25: float = Field(default=0.3, ge=0)
    weight_pinyin: float = Field(default=0.2, ge=0)
    topic_support: float = Field(default=0.4, ge=0, le=1)  # share of a topic's second-best entry in its score

    # --- policy (scores are the fused score in [0, 1]) ---
    answer_threshold: float = Field(default=0.45, ge=0, le=1)  # below: not confident enough to answer
    out_of_scope_threshold: float = Field(default=0.4, ge=0, le=1)  # below, with no hotline words: out of scope
    min_margin: float = Field(default=0.0, ge=0, le=1)  # top-2 topics closer than this: ask to clarify
    misses_before_agent: int = Field(default=2, ge=1, le=5)  # consecutive misses that offer a person

    llm: LlmSettings = Field(default_factory=LlmSettings)
