"""The router on a small fixture KB with the real embedding model: decisions, languages, bad input, progress."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from routing.retrieval_embed import E5Embedder
from routing.router import Decision, Router
from routing.topics import TOPICS
from routing_helpers import fixture_settings


class CountingEmbedder:
    """The real E5 embedder, counting how many texts it embeds (to see the disk cache at work)."""

    def __init__(self) -> None:
        self._inner = E5Embedder(threads=1)
        self.name, self.dim = self._inner.name, self._inner.dim
        self.embedded = 0

    def embed(self, texts, *, passage=False):
        self.embedded += len(texts)
        return self._inner.embed(texts, passage=passage)


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    r = Router.load(fixture_settings(tmp_path_factory.mktemp("router")))
    r.warm_up()
    yield r
    r.close()


def _check(d: Decision) -> None:
    """Invariants every decision keeps."""
    assert d.route in ("answer", "clarify", "agent")
    assert d.topic in TOPICS
    assert d.language in ("en", "zh")
    assert isinstance(d.answer, str) and d.answer.strip()
    assert 0.0 <= d.score <= 1.0 and np.isfinite(d.margin)
    assert d.reason
    if d.topic == "human_agent":
        assert d.route == "agent"
    has_han = any("\u4e00" <= ch <= "\u9fff" for ch in d.answer)
    if d.other_language is None:
        assert has_han == (d.language == "zh"), "the answer is spoken in the language it claims"


@pytest.mark.parametrize(
    "text, language, topic, entry",
    [
        ("What papers do I need for my work permit?", "en", "work_permit_apply", "work_permit_apply.documents"),
        ("申请工作许可要带哪些材料", "zh", "work_permit_apply", "work_permit_apply.documents"),
        ("工作需可要什么材料", "zh", "work_permit_apply", "work_permit_apply.documents"),  # homophone 需可 for 许可
        ("my permit expires soon, how do I renew it", "en", "work_permit_extend", "work_permit_extend.when"),
        ("入境以后居留许可多久要办", "zh", "residence_permit", "residence_permit.deadline"),
    ],
)
def test_answers_from_the_kb(router, text, language, topic, entry):
    d = router.decide(text, language=language)
    _check(d)
    assert (d.route, d.topic, d.entry_id, d.language) == ("answer", topic, entry, language)
    assert d.answer == router.kb.by_id(entry).answer[language]
    assert d.score > 0 and d.margin > 0


def test_answer_is_in_the_callers_language_whatever_the_label(router):
    # The recogniser may label a mixed utterance either way: the text decides the language of the answer.
    for label in ("en", "zh"):
        d = router.decide("我的work permit怎么延期", language=label)
        _check(d)
        assert (d.topic, d.language) == ("work_permit_extend", "zh")
        d = router.decide("How do I renew my 工作许可?", language=label)
        _check(d)
        assert (d.topic, d.language) == ("work_permit_extend", "en")


def test_cross_language_matching(router, tmp_path):
    """An English question finds an entry whose only phrasings are Chinese (embeddings are multilingual)."""
    import yaml

    kb = tmp_path / "kb"
    kb.mkdir()
    for topic, zh_q, en_a, zh_a in [
        ("salary_fx", ["外籍人才工资怎么购汇汇出境外？"], "Use the Fast Pass.", "使用薪酬购付汇便利化。"),
        ("income_tax", ["外国人在中国住满多少天要交个人所得税？"], "183 days.", "一百八十三天。"),
    ]:
        (kb / f"{topic}.yaml").write_text(yaml.safe_dump({"topic": topic, "entries": [{
            "id": f"{topic}.x", "source": [], "confidence": "high",
            "questions": {"en": ["?"], "zh": zh_q}, "answer": {"en": en_a, "zh": zh_a}}]}, allow_unicode=True),
            encoding="utf-8")
    r = Router.load(fixture_settings(tmp_path, knowledge_dir=kb))
    for question, topic in [("How can I send my salary abroad in foreign currency?", "salary_fx"),
                            ("How many days in China before I pay income tax?", "income_tax")]:
        found = r.retriever.retrieve(question)
        assert found.best.entry.topic == topic and "embedding" in found.signal
        assert found.best.signals.get("bm25", 0.0) == 0.0, "no shared words: the embedding alone found it"
    r.close()


@pytest.mark.parametrize("text", ["转人工", "我要找人工客服", "I want to talk to a real person", "operator!", "agent"])
def test_requests_for_a_person_go_to_the_queue(router, text):
    d = router.decide(text, language="zh" if any(ord(c) > 127 for c in text) else "en")
    _check(d)
    assert (d.route, d.topic, d.reason) == ("agent", "human_agent", "explicit_agent_request")
    assert d.answer == router.prompts.text("transferring", d.language)


def test_unserved_language(router):
    d = router.decide("仕事の許可はどうやって申請しますか", language="other:ja")
    _check(d)
    assert (d.route, d.topic, d.other_language) == ("agent", "human_agent", "ja")
    assert d.answer == router.prompts.text("language_not_served", "both")


@pytest.mark.parametrize("text, language", [("What will the weather be tomorrow?", "en"), ("明天天气怎么样", "zh"),
                                            ("where can I buy a high speed train ticket", "en")])
def test_out_of_scope_is_never_answered_as_in_scope(router, text, language):
    d = router.decide(text, language=language)
    _check(d)
    assert (d.route, d.topic, d.language) == ("answer", "out_of_scope", language)


@pytest.mark.parametrize("language, texts", [("en", ("hello? um, hello?", "I have a question")),
                                             ("zh", ("嗯那个", "我想问个事情"))])
def test_two_misses_put_the_caller_through_and_say_why(router, language, texts):
    state = router.new_dialog()
    first = router.decide(texts[0], language=language, state=state, now=0.0)
    second = router.decide(texts[1], language=language, state=state, now=4.0)
    assert first.route == "clarify" and first.answer == router.prompts.text("repeat", language)
    assert (second.route, second.topic, second.language) == ("agent", "human_agent", language)
    assert second.answer == router.prompts.text("no_answer_transfer", language)
    assert second.answer != router.prompts.text("transferring", language)


BAD_INPUTS = [
    "", " ", "\n\t", "x" * 10000, "工作许可" * 2500, "😀😀😀", "🙏 help 🙏", "Привет, как получить разрешение на работу?",
    "مرحبا", "'; DROP TABLE applications; --", "<script>alert('x')</script>", "<b>work permit</b>",
    "SELECT * FROM users WHERE 1=1", "\x00\x01\x02", "{position} {0} %s", "?????", "1234567890" * 100,
    "\ud800", "ＷＰ", "WP" * 5000,
]


@pytest.mark.parametrize("text", BAD_INPUTS)
@pytest.mark.parametrize("language", ["en", "zh", "other:ja", "", "klingon", None])
def test_bad_input_gets_a_sensible_decision(router, text, language):
    d = router.decide(text, language=language)  # never raises
    _check(d)
    assert d.reason != "internal_error"


def test_non_string_text(router):
    for value in (None, 42, b"bytes", ["list"]):
        _check(router.decide(value, language="en"))  # type: ignore[arg-type]


def test_work_permit_progress_dialog(router, caplog):
    caplog.set_level(logging.DEBUG)
    state = router.new_dialog()
    ask = router.decide("I want to check my work permit application status", language="en", state=state, now=0.0)
    assert (ask.route, ask.topic) == ("answer", "work_permit_progress")
    said = router.decide("W P two zero two six one one zero zero zero one", language="en", state=state, now=5.0)
    _check(said)
    # The number alone is never looked up: the second factor is asked for first.
    assert (said.route, said.topic, said.reason) == ("answer", "work_permit_progress", "application_factor_needed")
    assert "Approved" not in said.answer and "date of birth" in said.answer
    born = router.decide("March fifteenth, nineteen ninety", language="en", state=state, now=9.0)
    _check(born)
    assert (born.route, born.topic, born.reason) == ("answer", "work_permit_progress", "application_lookup")
    assert "Approved" in born.answer and "20 November 2026" in born.answer
    zh = router.new_dialog()
    router.decide("申请编号WP二零二六一一零零零二", language="zh", state=zh)
    found = router.decide("出生日期是一九八五年十一月二日", language="zh", state=zh)
    _check(found)
    assert found.reason == "application_lookup" and "正在审核" in found.answer and "2026年11月18日" in found.answer
    unknown = router.new_dialog()
    router.decide("my application number is WP2026999999", language="en", state=unknown)
    missing = router.decide("1990-03-15", language="en", state=unknown)
    _check(missing)
    assert (missing.topic, missing.reason) == ("work_permit_progress", "application_number_unknown")
    assert "colleague" in missing.answer
    # Caller-supplied numbers and factors never appear in log text.
    for record in caplog.records:
        for secret in ("2026110001", "2026999999", "1990", "4821"):
            assert secret not in record.getMessage()


def test_a_wrong_factor_sounds_like_an_unknown_number(router):
    """Whether a number exists must not be learnt from the answer: a wrong factor gets the unknown number's words."""
    def attempt(number: str, factor: str):
        state = router.new_dialog()
        router.decide(number, language="en", state=state)
        return router.decide(factor, language="en", state=state)

    wrong = attempt("WP2026110001", "the last four are 9 9 9 9")
    absent = attempt("WP2026110009", "the last four are 9 9 9 9")
    assert (wrong.reason, absent.reason) == ("application_number_unknown", "application_number_unknown")
    assert wrong.answer.replace("0 0 0 1", "#") == absent.answer.replace("0 0 0 9", "#")
    assert attempt("WP2026110001", "4821").reason == "application_lookup"


def test_at_most_three_lookups_per_call_then_a_person(router):
    state = router.new_dialog()
    for i in range(2):
        router.decide("WP2026110001", language="en", state=state)
        assert router.decide(f"the last four are 000{i}", language="en", state=state).reason == \
            "application_number_unknown"
    router.decide("WP2026110001", language="en", state=state)
    third = router.decide("4821", language="en", state=state)  # the right factor, third look-up: still answered
    assert third.reason == "application_lookup"
    fourth = router.decide("WP2026110002", language="en", state=state)
    assert (fourth.route, fourth.reason) == ("agent", "application_lookup_limit")
    # Three wrong factors: put through to a person at the third.
    state = router.new_dialog()
    reasons = []
    for i in range(3):
        router.decide("WP2026110001", language="en", state=state)
        reasons.append(router.decide(f"1999-01-0{i + 1}", language="en", state=state))
    assert [d.reason for d in reasons] == ["application_number_unknown"] * 2 + ["application_lookup_limit"]
    assert reasons[-1].route == "agent" and "agent" in reasons[-1].answer
    zh = router.new_dialog()
    zh.lookups = 3
    limit = router.decide("申请编号WP二零二六一一零零零二", language="zh", state=zh)
    assert limit.route == "agent" and "人工" in limit.answer


def test_a_number_alone_is_not_an_application_without_context(router):
    d = router.decide("my phone is 13812345678", language="en")
    assert d.reason not in ("application_lookup", "application_number_unknown")


def test_embeddings_are_cached_on_disk(tmp_path):
    settings = fixture_settings(tmp_path)
    first = CountingEmbedder()
    r1 = Router.load(settings, embedder=first)
    assert first.embedded > 0
    second = CountingEmbedder()
    r2 = Router.load(settings, embedder=second)
    assert second.embedded == 0, "the second load reads the KB embeddings from the cache"
    q = "What papers do I need for my work permit?"
    assert r1.decide(q, language="en") == r2.decide(q, language="en")
    r1.close(), r2.close()


def test_lexical_only_still_routes(tmp_path):
    r = Router.load(fixture_settings(tmp_path, use_embeddings=False))
    d = r.decide("工作需可要什么材料", language="zh")
    assert (d.topic, d.language) == ("work_permit_apply", "zh")
    assert "pinyin" in d.reason
    r.close()


def test_pinyin_folds_the_iu_ou_confusion_and_keeps_other_syllables_apart():
    from routing.retrieval_text import pinyin_tokens

    # Whisper heard the hotline voice's 居留 (ju liu) as 举楼 (ju lou), `hotline bench call`.
    assert pinyin_tokens("举楼许可") == pinyin_tokens("居留许可")
    assert pinyin_tokens("九") != pinyin_tokens("局") and pinyin_tokens("修") != pinyin_tokens("需")



def test_a_stretch_that_sounds_like_a_hotline_term_is_written_as_the_term():
    from routing.retrieval_text import correct_homophones

    assert correct_homophones("菊漏许可在哪里办理?") == "居留许可在哪里办理?"
    assert correct_homophones("工作需可要什么材料") == "工作许可要什么材料"
    assert correct_homophones("how about 菊漏许可") == "how about 居留许可"
    # Right already, sounding like no term, or too short to tell from ordinary words: left as it is.
    for text in ("我想问居留许可", "今天天气怎么样", "留学生", "work permit"):
        assert correct_homophones(text) == text
