"""The shipped knowledge base against the development part of the shipped evaluation set: the routing targets
(topic accuracy at least 92% overall and per language, route accuracy at least 95%, every request for a person
routed to an agent, no out-of-scope question answered as in scope). The held-out test part is measured by
`hotline bench routing` and is not a tuning target (routing/eval/README.md)."""
from __future__ import annotations

import pytest

from routing.bench import PARTS, load_eval, run_eval
from routing.progress import parse_application_number
from routing.router import Router
from routing_helpers import real_settings


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    r = Router.load(real_settings(tmp_path_factory.mktemp("eval")))
    yield r
    r.close()


@pytest.fixture(scope="module")
def report(router):
    return run_eval(router, load_eval(PARTS["dev"]))


def test_eval_set_is_big_and_balanced():
    items = load_eval(PARTS["dev"])
    assert len(items) >= 150
    langs = [q["language"] for q in items]
    assert langs.count("en") >= 0.35 * len(items) and langs.count("zh") >= 0.35 * len(items)
    assert "mixed" in langs and any(q["topic"] == "human_agent" for q in items)


def test_topic_and_route_accuracy(report):
    assert report["topic_accuracy"] >= 0.92, report["errors"]
    assert report["route_accuracy"] >= 0.95, report["errors"]
    for language, figures in report["per_language"].items():
        assert figures["topic"] >= 0.92, (language, report["errors"])


def test_safety_targets(report):
    assert report["agent_requests_to_agent"] == 1.0
    assert report["out_of_scope_answered_in_scope"] == 0
    assert report["language_accuracy"] == 1.0


@pytest.mark.parametrize(
    "text, language",
    [("WP202611000123", "en"), ("my application number is W P two zero two six one one zero zero zero one two three",
                                 "en"), ("申请编号是WP二零二六一一零零零一二三", "zh")],
)
def test_demo_application_is_read_back(router, text, language):
    state = router.new_dialog()
    ask = router.decide(text, language=language, state=state)
    assert (ask.route, ask.reason, ask.language) == ("answer", "application_factor_needed", language)
    d = router.decide("1990-03-15", language=language, state=state)  # the demo applicant's date of birth
    assert (d.route, d.topic, d.reason, d.language) == ("answer", "work_permit_progress", "application_lookup", language)
    status = router.applications.find(parse_application_number(text))
    assert status is not None and status.status(language) in d.answer


def test_unknown_application_offers_a_person(router):
    state = router.new_dialog()
    router.decide("my application number is WP209912345678", language="en", state=state)
    d = router.decide("the last four of my passport are 1 2 3 4", language="en", state=state)
    assert (d.topic, d.reason) == ("work_permit_progress", "application_number_unknown")


def test_shipped_kb_never_raises_on_bad_input(router):
    for text in ["", "x" * 10000, "😀" * 50, "Привет", "<script>alert(1)</script>", "' OR 1=1; --", "\x00"]:
        for language in ("en", "zh", "other:fr"):
            d = router.decide(text, language=language)
            assert d.route in ("answer", "clarify", "agent") and d.answer and d.reason != "internal_error"


# What Whisper made of the hotline voice's "居留许可在哪里办理？" in `hotline bench call`, as the call recognized it.
@pytest.mark.parametrize("heard", ["举楼许可在哪里办理?", "菊漏许可在哪里办理?", "菊流许可在哪里办理?", "据留许可在哪里办理?",
                                   "居留许可在哪里办理?"])
def test_a_misheard_residence_permit_question_still_routes_to_it(router, heard):
    d = router.decide(heard, language="zh")
    assert (d.route, d.topic, d.language) == ("answer", "residence_permit", "zh"), d
