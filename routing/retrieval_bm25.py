"""A small Okapi BM25 index over token lists, with a score normalised to [0, 1] so it can be fused."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Sequence


class Bm25Index:
    """BM25 over documents given as token lists (inverted index; a few thousand short documents at most).

    `scores()` also returns the query's reachable maximum, for a score normalised to [0, 1): BM25 divided by the
    sum of (k1 + 1) * IDF over the query tokens, i.e. the IDF-weighted share of the question that the document
    explains, each token's share saturating with its frequency. Query tokens the index has never seen count with the
    highest IDF, so words from outside the hotline's vocabulary ("weather", "restaurant") pull the score down.
    Documents here are an entry's phrasings together, so a word repeats across phrasings: a small k1 lets one
    occurrence count for most of a token's share, a small b keeps entries with many phrasings from being penalised.
    """

    def __init__(self, *, documents: Sequence[Sequence[str]], k1: float = 0.5, b: float = 0.3) -> None:
        self.k1 = k1
        self.b = b
        self.n_docs = len(documents)
        self.lengths = [len(d) for d in documents]
        self.avg_len = (sum(self.lengths) / self.n_docs) if self.n_docs else 1.0
        df: Counter[str] = Counter()
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for doc_id, doc in enumerate(documents):
            for token, tf in Counter(doc).items():
                self.postings[token].append((doc_id, tf))
                df[token] += 1
        self.idf = {t: math.log(1 + (self.n_docs - n + 0.5) / (n + 0.5)) for t, n in df.items()}
        self.max_idf = math.log(1 + (self.n_docs + 0.5) / 0.5)

    def scores(self, query: Sequence[str]) -> tuple[dict[int, float], float]:
        """(doc id -> raw BM25 score for documents sharing a token, best reachable score for this query)."""
        out: dict[int, float] = defaultdict(float)
        best = 0.0
        k1, b, avg = self.k1, self.b, self.avg_len
        for token, qtf in Counter(query).items():
            idf = self.idf.get(token)
            if idf is None:
                best += self.max_idf * qtf * (k1 + 1)
                continue
            best += idf * qtf * (k1 + 1)
            for doc_id, tf in self.postings[token]:
                norm = tf + k1 * (1 - b + b * self.lengths[doc_id] / avg)
                out[doc_id] += idf * qtf * tf * (k1 + 1) / norm
        return out, best
