"""The evaluation set's development / held-out test split, the benchmark's baselines and its statistics."""
from __future__ import annotations

import hashlib
import math
import random
from collections import Counter

import numpy as np
import pytest

from routing.bench import PARTS, Bm25TopicBaseline, load_eval, majority, run_eval
from routing.knowledge import load_knowledge
from routing.retrieval_text import normalize
from routing.router import Router
from routing.stats import percentile, wilson_interval
from routing.topics import HUMAN_AGENT, OUT_OF_SCOPE, ROUTES, TOPICS
from routing_helpers import FIXTURES, fixture_settings

# routing/eval/README.md: the test part is frozen; a change to it must be a deliberate, recorded one.
FROZEN_TEST_SHA256 = "1800c3528bf691dd7a9f55878018818c22ad274a09b9c9ae4e1dd43391a29ae8"


def _key(text: str) -> str:
    return " ".join(normalize(text).split())


def test_the_parts_share_no_question():
    dev = {_key(q["text"]) for q in load_eval(PARTS["dev"])}
    test = [_key(q["text"]) for q in load_eval(PARTS["test"])]
    assert len(test) == len(set(test)), "a question repeats within the test part"
    assert not dev & set(test), sorted(dev & set(test))


def test_the_test_part_is_the_frozen_file():
    assert hashlib.sha256(PARTS["test"].read_bytes()).hexdigest() == FROZEN_TEST_SHA256


def test_the_test_part_covers_languages_topics_and_routes():
    items = load_eval(PARTS["test"])
    assert all(q["topic"] in TOPICS and q["route"] in ROUTES for q in items)
    assert all(q["route"] == "agent" for q in items if q["topic"] == HUMAN_AGENT)
    mixed = [q for q in items if q["language"] == "mixed"]
    assert len(mixed) >= 60
    # Code-switched: both scripts in every mixed question, both directions present.
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in q["text"]) and any(ch.isascii() and ch.isalpha()
               for ch in q["text"]) for q in mixed)
    mixed_topics = Counter(q["topic"] for q in mixed)
    assert len(mixed_topics) >= 18 and mixed_topics[HUMAN_AGENT] >= 3 and mixed_topics[OUT_OF_SCOPE] >= 3
    langs = Counter(q["language"] for q in items)
    assert langs["en"] >= 30 and langs["zh"] >= 30


# --- baselines --------------------------------------------------------------------------------------------------------
TINY = [
    {"text": "What documents do I need for a work permit?", "language": "en", "topic": "work_permit_apply",
     "route": "answer"},
    {"text": "入境后多久要办居留许可？", "language": "zh", "topic": "residence_permit", "route": "answer"},
    {"text": "zzzq wxyv", "language": "en", "topic": "hotline_info", "route": "clarify"},
    {"text": "我要转人工", "language": "zh", "topic": "human_agent", "route": "agent"},
    {"text": "我的 work permit 怎么申请", "language": "mixed", "topic": "work_permit_apply", "route": "answer"},
]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    router = Router.load(fixture_settings(tmp_path_factory.mktemp("split"), use_embeddings=False))
    try:
        yield run_eval(router, TINY)
    finally:
        router.close()


def test_majority_route_baseline_is_the_share_of_the_majority_route(tiny_report):
    maj = tiny_report["baselines"]["majority_route"]
    assert maj["route_label"] == "answer" and maj["topic_label"] == "work_permit_apply"
    assert maj["route"]["share"] == pytest.approx(3 / 5) and maj["topic"]["share"] == pytest.approx(2 / 5)
    per = maj["per_language"]
    assert per["en"]["route"]["share"] == pytest.approx(1 / 2) and per["zh"]["route"]["share"] == pytest.approx(1 / 2)
    assert per["mixed"]["route"]["share"] == 1.0
    assert maj["route"]["ci95"] == pytest.approx(list(wilson_interval(3, 5)))


def test_always_answer_baseline_takes_the_top_bm25_topic(tiny_report):
    base = tiny_report["baselines"]["always_answer_bm25"]
    assert base["route"]["share"] == pytest.approx(3 / 5)  # the labelled `answer` share: it always answers
    # A KB phrasing word for word finds its own topic; words the KB never uses find nothing: out_of_scope.
    bm25 = Bm25TopicBaseline(load_knowledge(FIXTURES / "knowledge"))
    assert bm25.topic(TINY[0]["text"]) == "work_permit_apply"
    assert bm25.topic(TINY[1]["text"]) == "residence_permit"
    assert bm25.topic("zzzq wxyv") == OUT_OF_SCOPE
    assert base["topic"]["correct"] == sum(bm25.topic(q["text"]) == q["topic"] for q in TINY)


def test_majority_breaks_ties_by_the_given_order():
    assert majority(["agent", "answer"], ROUTES) == "answer"
    assert majority(["clarify", "clarify", "answer"], ROUTES) == "clarify"


# --- statistics -------------------------------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(13, 14)
    assert (lo, hi) == pytest.approx((0.6853, 0.9873), abs=1e-4)
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_percentile_interpolates_as_numpy_does():
    rng = random.Random(7)
    for n in (1, 2, 5, 40):
        xs = [rng.uniform(0, 100) for _ in range(n)]
        for q in (0, 5, 50, 95, 100):
            assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 50) is None
