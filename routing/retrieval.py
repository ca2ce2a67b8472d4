"""Hybrid retrieval: BM25 (jieba for Chinese) + multilingual embeddings + pinyin matching, fused per entry.

Every example phrasing of every entry, in both languages, is a document, so an English question can match a
Chinese entry's phrasing and the reverse (embeddings are multilingual). An entry's score for each signal is the best
score of its phrasings; the fused score is a weighted mean of the normalised signals, in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routing.knowledge import KnowledgeBase, KnowledgeEntry
from routing.retrieval_bm25 import Bm25Index
from routing.retrieval_embed import Embedder, embed_cached
from routing.retrieval_text import (
    HAN_RE, correct_homophones, expand_mixed, lexical_tokens, normalize, pinyin_tokens,
)

SIGNALS = ("embedding", "answer", "bm25", "pinyin")


@dataclass(frozen=True)
class Candidate:
    entry: KnowledgeEntry
    score: float  # fused, in [0, 1]
    signals: dict[str, float]  # normalised score of each signal used, in [0, 1]


@dataclass(frozen=True)
class Retrieval:
    candidates: tuple[Candidate, ...]  # best first, at most one per entry
    margin: float  # the chosen topic's score minus the next topic's (topic score: best entry + share of the second)
    signal: str  # the signals whose own best entry has the chosen topic, e.g. "bm25+embedding"

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


@dataclass(frozen=True)
class Weights:
    embedding: float = 0.5  # question to example questions
    answer: float = 0.3  # question to the entry's answer (E5 query -> passage)
    bm25: float = 0.3
    pinyin: float = 0.2


# Cosine similarities of multilingual-e5 crowd into a narrow band (unrelated questions still score ~0.82), so the
# band is stretched to [0, 1] before fusing. Measured on the KB's own phrasings, each held out in turn: its nearest
# phrasing of the same topic has cosine 0.89 (5th percentile) to 0.97 (95th); weather or restaurant questions reach
# 0.82-0.87. Question-to-answer cosines sit lower (median 0.90 for the right entry).
EMBED_FLOOR, EMBED_CEIL = 0.80, 0.97
ANSWER_FLOOR, ANSWER_CEIL = 0.78, 0.93
SUPPORT_WINDOW = 0.1  # see topic_support in retrieve()
# A spoken question is a sentence or two; the embedding of a longer text costs time and says nothing more.
EMBED_MAX_CHARS = 240


def entry_phrasings(entry: KnowledgeEntry) -> list[str]:
    """An entry's example questions, both languages, normalised: what every signal compares a question with."""
    return [normalize(p) for lang in sorted(entry.questions) for p in entry.questions[lang]]


class HybridRetriever:
    def __init__(
        self,
        *,
        kb: KnowledgeBase,
        embedder: Embedder | None,
        weights: Weights = Weights(),
        cache_dir: Path | None = None,
        use_pinyin: bool = True,
        topic_support: float = 0.4,
        max_chars: int = 600,
        previous: "HybridRetriever | None" = None,
    ) -> None:
        """`previous`: the index this one replaces; the embeddings of texts it already holds are reused."""
        self.kb = kb
        self.weights = weights
        self.max_chars = max_chars
        self.embedder = embedder
        self.use_pinyin = use_pinyin
        self.topic_support = topic_support
        texts: list[str] = []
        owner: list[int] = []
        entry_docs: list[str] = []
        for i, entry in enumerate(kb.entries):
            phrasings = entry_phrasings(entry)
            texts.extend(phrasings)
            owner.extend([i] * len(phrasings))
            entry_docs.append(" \n ".join(phrasings))
        self._owner = np.asarray(owner, dtype=np.int64)
        # Phrasings are grouped by entry, so per-entry maxima are one reduceat over these offsets.
        self._starts = np.flatnonzero(np.r_[True, self._owner[1:] != self._owner[:-1]])
        self._n_entries = len(kb.entries)
        self._topics = [e.topic for e in kb.entries]
        # Lexical signals score an entry's phrasings together, as one document: a question that mixes languages
        # ("how do I renew my 工作许可") shares words with the English and the Chinese phrasings, never with one alone.
        self._lexical = Bm25Index(documents=[lexical_tokens(t) for t in entry_docs])
        self._pinyin = Bm25Index(documents=[pinyin_tokens(t) for t in entry_docs]) if use_pinyin else None
        self._vectors = self._answers = None
        self._texts, self._answer_texts = texts, []
        if embedder is not None:
            reuse = previous is not None and previous._vectors is not None and previous.embedder is embedder
            self._vectors = embed_cached(embedder, texts, cache_dir=cache_dir,
                                         known=previous.known_vectors() if reuse else None)
            answers = [normalize(e.answer[lang]) for e in kb.entries for lang in ("en", "zh")]
            self._answer_texts = answers
            # Row 2i is entry i's English answer, 2i+1 its Chinese one.
            self._answers = embed_cached(embedder, answers, cache_dir=cache_dir, passage=True,
                                         known=previous.known_vectors(passage=True) if reuse else None)

    def known_vectors(self, *, passage: bool = False) -> dict[str, np.ndarray]:
        """text -> embedding of this index's phrasings (or answers, `passage`)."""
        texts, matrix = (self._answer_texts, self._answers) if passage else (self._texts, self._vectors)
        return {} if matrix is None else dict(zip(texts, matrix))

    def embed_questions(self, texts: list[str]) -> np.ndarray | None:
        """Embeddings of callers' questions as retrieval sees them (normalised, cut), or None without embeddings."""
        if self.embedder is None:
            return None
        return self.embedder.embed([normalize(t[: self.max_chars])[:EMBED_MAX_CHARS] for t in texts])

    def _per_entry(self, doc_scores: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(doc_scores, self._starts)

    def _bm25_signal(self, index: Bm25Index, tokens: list[str]) -> np.ndarray | None:
        if not tokens:
            return None
        raw, best = index.scores(tokens)
        out = np.zeros(self._n_entries, dtype=np.float64)
        if best > 0:
            for doc_id, s in raw.items():
                out[doc_id] = s / best
        return np.minimum(out, 1.0)

    def retrieve(self, text: str, *, top_k: int = 5) -> Retrieval:
        text = normalize(text[: self.max_chars])
        if self.use_pinyin:
            text = correct_homophones(text)  # every signal sees 居留许可 where the recognizer wrote 菊漏许可
        expanded = expand_mixed(text)
        signals: dict[str, np.ndarray] = {}
        lexical = self._bm25_signal(self._lexical, lexical_tokens(expanded))
        if lexical is not None:
            signals["bm25"] = lexical
        if self._pinyin is not None and HAN_RE.search(text):
            pinyin = self._bm25_signal(self._pinyin, pinyin_tokens(expanded))
            if pinyin is not None:
                signals["pinyin"] = pinyin
        if self._vectors is not None and text.strip() and (lexical is not None or any(ch.isalnum() for ch in text)):
            query = self.embedder.embed([text[:EMBED_MAX_CHARS]])[0]
            cos = self._per_entry(self._vectors @ query)
            signals["embedding"] = np.clip((cos - EMBED_FLOOR) / (EMBED_CEIL - EMBED_FLOOR), 0.0, 1.0)
            to_answer = (self._answers @ query).reshape(self._n_entries, 2).max(axis=1)
            signals["answer"] = np.clip((to_answer - ANSWER_FLOOR) / (ANSWER_CEIL - ANSWER_FLOOR), 0.0, 1.0)
        if not signals or self._n_entries == 0:
            return Retrieval(candidates=(), margin=0.0, signal="none")
        fused = np.zeros(self._n_entries, dtype=np.float64)
        total = 0.0
        for name, values in signals.items():
            w = getattr(self.weights, name)
            fused += w * values
            total += w
        if total > 0:
            fused /= total
        # The topic is chosen on its best entry plus a share of its second best: a question that several entries of
        # one topic match is more surely about that topic than one matched by a single entry (held-out KB phrasings:
        # 78% -> 80% top-1 topic with a share of 0.4).
        topic_best: dict[str, float] = {}
        topic_second: dict[str, float] = {}
        for i in np.argsort(-fused, kind="stable"):
            t = self._topics[i]
            if t not in topic_best:
                topic_best[t] = float(fused[i])
            elif t not in topic_second:
                topic_second[t] = float(fused[i])
        topic_score = {t: b + self.topic_support * topic_second.get(t, 0.0) for t, b in topic_best.items()}
        # Support breaks near-ties only: a topic whose best entry is clearly behind the best entry overall is not
        # lifted past it by having more entries.
        top_entry = max(topic_best.values())
        ranked_topics = sorted(topic_score, key=lambda t: (topic_best[t] >= top_entry - SUPPORT_WINDOW, topic_score[t]),
                               reverse=True)
        best_topic = ranked_topics[0]
        order = np.argsort(-fused, kind="stable")
        # Best topic's entries first, then the rest by score.
        order = np.r_[[i for i in order if self._topics[i] == best_topic], [i for i in order if self._topics[i] != best_topic]]
        top = order[:top_k]
        candidates = tuple(
            Candidate(
                entry=self.kb.entries[i],
                score=float(fused[i]),
                signals={name: float(values[i]) for name, values in signals.items()},
            )
            for i in top
        )
        eligible = [t for t in ranked_topics[1:] if topic_best[t] >= top_entry - SUPPORT_WINDOW]
        if eligible:
            margin = topic_score[best_topic] - topic_score[eligible[0]]
        else:
            margin = topic_best[best_topic] - max((topic_best[t] for t in ranked_topics[1:]), default=0.0)
        agreeing = [n for n in SIGNALS if n in signals and self._topics[int(np.argmax(signals[n]))] == best_topic
                    and float(signals[n].max()) > 0]
        return Retrieval(
            candidates=candidates,
            margin=float(margin),
            signal="+".join(agreeing) if agreeing else "fused",
        )
