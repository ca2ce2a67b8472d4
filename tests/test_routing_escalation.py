"""Escalation policy: pure code on a virtual clock."""
from __future__ import annotations

import pytest

from routing.escalation import DialogState, PolicyConfig, PolicyInput, choose, is_agent_request

CONFIG = PolicyConfig(answer_threshold=0.5, out_of_scope_threshold=0.35, misses_before_agent=2, miss_memory_s=60)


def _inp(**overrides) -> PolicyInput:
    values = dict(topic="work_permit_apply", score=0.8, margin=0.3, confidence="high", in_domain=True,
                  has_content=True, topical=True, agent_request=False, other_language=None)
    values.update(overrides)
    return PolicyInput(**values)


@pytest.mark.parametrize(
    "text",
    [
        "人工", "转人工", "我要转人工服务", "真人", "我想跟真人说话", "帮我转接一下", "我要找客服", "能不能让工作人员接电话",
        "operator", "Agent please", "I want to speak to a real person", "Can I talk to someone?",
        "Transfer me to a human", "put me through to an agent", "I need a human agent", "representative",
        "let me speak with a live person", "I don't want a robot",
    ],
)
def test_explicit_requests_for_a_person(text):
    assert is_agent_request(text.lower())


@pytest.mark.parametrize(
    "text",
    [
        "人工智能岗位属于急需紧缺人才吗", "how do I apply for a work permit", "can my agency apply for me",
        "what does a travel agent need", "申请工作许可需要什么材料", "who is the person responsible for my permit",
        "",
    ],
)
def test_not_requests_for_a_person(text):
    assert not is_agent_request(text.lower())


def test_confident_match_answers_and_resets_misses():
    state = DialogState(misses=1, last_miss_at=0.0)
    v = choose(_inp(), state, now=1.0, config=CONFIG)
    assert (v.route, v.kind, v.topic) == ("answer", "entry", "work_permit_apply")
    assert state.misses == 0


def test_low_confidence_asks_once_then_offers_a_person():
    state = DialogState()
    first = choose(_inp(score=0.3), state, now=10.0, config=CONFIG)
    second = choose(_inp(score=0.3), state, now=15.0, config=CONFIG)
    assert first.route == "clarify" and second.route == "agent"
    assert second.topic == "human_agent"
    third = choose(_inp(score=0.3), state, now=20.0, config=CONFIG)
    assert third.route == "clarify", "after handing over, the count starts again"


def test_an_answer_between_misses_breaks_the_run():
    state = DialogState()
    assert choose(_inp(score=0.3), state, now=0.0, config=CONFIG).route == "clarify"
    assert choose(_inp(score=0.9), state, now=5.0, config=CONFIG).route == "answer"
    assert choose(_inp(score=0.3), state, now=10.0, config=CONFIG).route == "clarify"


def test_an_old_miss_is_forgotten_on_the_virtual_clock():
    state = DialogState()
    assert choose(_inp(score=0.3), state, now=0.0, config=CONFIG).route == "clarify"
    assert choose(_inp(score=0.3), state, now=61.0, config=CONFIG).route == "clarify"
    assert choose(_inp(score=0.3), state, now=62.0, config=CONFIG).route == "agent"


def test_request_for_a_person_beats_a_confident_answer():
    v = choose(_inp(agent_request=True, score=1.0), DialogState(), now=0.0, config=CONFIG)
    assert (v.route, v.topic, v.reason) == ("agent", "human_agent", "explicit_agent_request")


def test_unserved_language_goes_to_the_queue():
    v = choose(_inp(other_language="ja"), DialogState(), now=0.0, config=CONFIG)
    assert (v.route, v.kind, v.topic) == ("agent", "language_not_served", "human_agent")


def test_human_agent_topic_always_routes_agent():
    for score in (0.6, 1.0):
        v = choose(_inp(topic="human_agent", score=score), DialogState(), now=0.0, config=CONFIG)
        assert v.route == "agent"
    # A weak resemblance to a request for a person is a miss like any other, not a human_agent decision.
    v = choose(_inp(topic="human_agent", score=0.4), DialogState(), now=0.0, config=CONFIG)
    assert v.route == "clarify" and v.topic == "hotline_info"


def test_out_of_scope():
    matched = choose(_inp(topic="out_of_scope", score=0.7), DialogState(), now=0.0, config=CONFIG)
    assert (matched.route, matched.topic) == ("answer", "out_of_scope")
    unmatched = choose(_inp(score=0.2, in_domain=False), DialogState(), now=0.0, config=CONFIG)
    assert (unmatched.route, unmatched.topic) == ("answer", "out_of_scope")
    # With hotline words but a weak match it is a miss, not out of scope: ask again.
    weak = choose(_inp(score=0.2, in_domain=True), DialogState(), now=0.0, config=CONFIG)
    assert weak.route == "clarify" and weak.topic != "human_agent"


def test_every_verdict_is_consistent():
    """Invariants over a grid of inputs: every topic is one of routing/topics.py, and the human_agent topic (the
    caller asks for a person) always routes to an agent."""
    import itertools

    from routing.topics import TOPICS

    for topic, score, in_domain, agent, other in itertools.product(
        ["work_permit_apply", "human_agent", "out_of_scope", None], [0.0, 0.3, 0.45, 0.9], [True, False],
        [True, False], [None, "ja"],
    ):
        state = DialogState()
        v = choose(_inp(topic=topic, score=score, in_domain=in_domain, agent_request=agent, other_language=other),
                   state, now=0.0, config=CONFIG)
        assert v.route in ("answer", "clarify", "agent") and v.topic in TOPICS
        if v.topic == "human_agent":
            assert v.route == "agent"
        if agent or other:
            assert v.route == "agent"
        assert state.turns == 1
