"""The router: a transcript (with its language) becomes a Decision — answer, clarify, or the agent queue.

    router = Router.load(RoutingSettings())
    state = router.new_dialog()                      # one per call
    decision = router.decide(text, language="zh", state=state, now=t)

Retrieval (routing.retrieval) finds candidate entries; the escalation policy (routing.escalation, pure) picks the route;
this module turns the verdict into the words to speak, in the caller's language. decide() never raises on any text.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date

from routing.knowledge import KnowledgeBase, KnowledgeEntry, load_knowledge
from routing.llm import ChatRewriter
from routing.escalation import DialogState, PolicyConfig, PolicyInput, choose, is_agent_request
from routing.progress import (
    MAX_LOOKUPS_PER_CALL,
    ApplicationLookup,
    ApplicationNumber,
    InMemoryApplications,
    SecondFactor,
    parse_application_number,
    parse_dates,
    parse_second_factor,
)
from routing.prompts import Prompts
from routing.retrieval import HybridRetriever, Retrieval, Weights
from routing.retrieval_embed import E5Embedder, Embedder
from routing.retrieval_text import main_language, normalize, topical_words
from routing.settings import RoutingSettings
from routing.topics import HUMAN_AGENT, IN_SCOPE_TOPICS, OUT_OF_SCOPE, WORK_PERMIT_PROGRESS

log = logging.getLogger(__name__)

__all__ = ["Decision", "DialogState", "Router"]


@dataclass(frozen=True)
class Decision:
    route: str  # answer | clarify | agent
    topic: str  # a topic id of routing/topics.py
    entry_id: str | None
    language: str  # en | zh: the language `answer` is spoken in
    answer: str  # the text to speak
    score: float
    margin: float
    reason: str  # which signal or rule decided
    other_language: str | None = None  # code of an unserved language the caller spoke

    def to_dict(self) -> dict:
        return asdict(self)


# Used only when the data files say nothing for these cases; the content normally comes from the KB / prompts.
_DEFAULT_PROGRESS = {
    "progress_found": {
        "en": "Application {number}: {status} Last updated on {updated}.",
        "zh": "申请编号 {number}：{status} 更新日期：{updated}。",
    },
    "progress_not_found": {
        "en": "I could not find an application with the number {number} and those details. Please check them, "
        "or I can put you through to a colleague.",
        "zh": "没有查到编号为 {number} 且信息相符的申请。请核对一下，或者我可以为您转接人工服务。",
    },
    "progress_ask_factor": {
        "en": "Application {number}. To protect your data, please tell me your date of birth, or the last four "
        "characters of your passport number.",
        "zh": "申请编号 {number}。为了保护您的信息，请告诉我您的出生日期，或者护照号码的最后四位。",
    },
    "progress_lookup_limit": {
        "en": "Sorry, I can't check more applications on this call. I'm putting you through to an agent. "
        "Please hold.",
        "zh": "抱歉，本次通话不能再查询更多申请了，正在为您转接人工服务，请稍候。",
    },
}
_DEFAULT_OUT_OF_SCOPE = {
    "en": "Sorry, I can only help with working in Shanghai: work permits, residence permits, talent services, tax "
    "and social insurance. If you like, I can put you through to a colleague.",
    "zh": "抱歉，我只能回答在上海工作的相关问题，比如工作许可、居留许可、人才服务、个税和社保。需要的话，我可以为您转接人工服务。",
}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


def _spoken_date(iso: str, language: str) -> str:
    try:
        d = date.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{d.year}年{d.month}月{d.day}日" if language == "zh" else f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


def _parse_language(language: object) -> tuple[str | None, str | None]:
    """(served language hint en|zh|None, unserved language code|None) from "en", "zh", "other:ja", ..."""
    if not isinstance(language, str):
        return None, None
    lang = language.strip().lower()
    if lang in ("en", "zh"):
        return lang, None
    if lang.startswith(("en-", "en_")):
        return "en", None
    if lang.startswith(("zh-", "zh_", "cmn", "yue")):
        return "zh", None
    if lang.startswith("other"):
        code = lang.partition(":")[2].strip() or "und"
        return None, code[:16]
    if lang in ("", "unknown", "auto", "und", "mixed"):
        return None, None
    return None, lang[:16]  # a bare code of another language, e.g. "ja"


@dataclass(frozen=True)
class KnowledgeIndex:
    """A knowledge base with its retrieval index: what a published change replaces, as one object, in one step."""

    kb: KnowledgeBase
    retriever: HybridRetriever
    out_of_scope: tuple[KnowledgeEntry, ...]


def _retriever(settings: RoutingSettings, kb: KnowledgeBase, embedder: Embedder | None,
               previous: HybridRetriever | None = None) -> HybridRetriever:
    return HybridRetriever(
        kb=kb,
        embedder=embedder if settings.use_embeddings else None,
        weights=Weights(
            embedding=settings.weight_embedding, answer=settings.weight_answer, bm25=settings.weight_bm25, pinyin=settings.weight_pinyin
        ),
        cache_dir=settings.cache_dir,
        use_pinyin=settings.use_pinyin,
        topic_support=settings.topic_support,
        max_chars=settings.max_input_chars,
        previous=previous,
    )


class Router:
    def __init__(
        self,
        *,
        settings: RoutingSettings,
        kb: KnowledgeBase,
        prompts: Prompts,
        retriever: HybridRetriever,
        applications: ApplicationLookup | None,
        rewriter: ChatRewriter | None = None,
    ) -> None:
        self.settings = settings
        self.index = KnowledgeIndex(kb, retriever, tuple(e for e in kb.entries if e.topic == OUT_OF_SCOPE))
        self.prompts = prompts
        self.applications = applications  # the server puts its main store here (server/store/applications.py)
        self.rewriter = rewriter
        self.policy = PolicyConfig(
            answer_threshold=settings.answer_threshold,
            out_of_scope_threshold=settings.out_of_scope_threshold,
            min_margin=settings.min_margin,
            misses_before_agent=settings.misses_before_agent,
        )

    @property
    def kb(self) -> KnowledgeBase:
        return self.index.kb

    @property
    def retriever(self) -> HybridRetriever:
        return self.index.retriever

    def build_index(self, kb: KnowledgeBase) -> KnowledgeIndex:
        """A new index for `kb` (blocking: seconds for a whole base, milliseconds for a few changed entries, since
        the embeddings of unchanged phrasings and answers are taken from the current index). Run it off the event
        loop, then `install` it."""
        current = self.index.retriever
        retriever = _retriever(self.settings, kb, current.embedder, previous=current)
        return KnowledgeIndex(kb, retriever, tuple(e for e in kb.entries if e.topic == OUT_OF_SCOPE))

    def install(self, index: KnowledgeIndex) -> None:
        """Swap the index in one assignment: a decision in progress finishes on the index it started with."""
        self.index = index

    def with_index(self, index: KnowledgeIndex) -> "Router":
        """A router deciding on another index (a preview of unpublished edits); shares everything else."""
        other = Router(settings=self.settings, kb=index.kb, prompts=self.prompts, retriever=index.retriever,
                       applications=self.applications, rewriter=self.rewriter)
        other.index = index
        return other

    @classmethod
    def load(cls, settings: RoutingSettings, *, embedder: Embedder | None = None,
             applications: ApplicationLookup | None = None) -> "Router":
        """Load and validate the KB and prompts, embed the KB (cached on disk). `applications`: where look-ups go;
        default: the demonstration applications in memory (the server gives its main store instead)."""
        kb = load_knowledge(settings.knowledge_dir)
        prompts = Prompts.load(settings.prompts_path)
        if embedder is None and settings.use_embeddings:
            embedder = E5Embedder(threads=settings.embedding_threads)
        retriever = _retriever(settings, kb, embedder)
        if applications is None:
            applications = InMemoryApplications.from_file(settings.applications_path)
        rewriter = ChatRewriter(settings=settings.llm) if settings.llm.enabled else None
        return cls(settings=settings, kb=kb, prompts=prompts, retriever=retriever, applications=applications, rewriter=rewriter)

    def warm_up(self) -> None:
        """First-use costs (jieba's dictionary, the embedding engine) paid now rather than on a caller's turn."""
        self.decide("How do I apply for a work permit?", language="en")
        self.decide("工作许可怎么申请", language="zh")

    def new_dialog(self) -> DialogState:
        return DialogState()

    def close(self) -> None:
        if self.rewriter is not None:
            self.rewriter.close()

    # --- deciding ----------------------------------------------------------------------------------------------------
    def decide(self, text: str, *, language: str, state: DialogState | None = None, now: float = 0.0) -> Decision:
        state = state if state is not None else self.new_dialog()
        try:
            return self._decide(text, language=language, state=state, now=now)
        except Exception:  # noqa: BLE001 - a caller on the line must get an answer; the bug is logged, not spoken
            log.exception("routing failed; offering a person")
            hint, _ = _parse_language(language)
            lang = hint or "en"
            return Decision("agent", HUMAN_AGENT, None, lang, self._prompt("transferring", lang), 0.0, 0.0,
                            "internal_error")

    def _prompt(self, key: str, language: str, **params: object) -> str:
        return self.prompts.text(key, language, **params)

    def _decide(self, text: str, *, language: str, state: DialogState, now: float) -> Decision:
        index = self.index  # one index for the whole decision, even if a publish swaps it meanwhile
        raw = text[: self.settings.max_input_chars] if isinstance(text, str) else ""
        hint, other = _parse_language(language)
        norm = normalize(raw)
        script = main_language(norm)
        if other is None and hint is None and script == "other":
            other = "und"  # only another script, and no served language said: treat as unserved
        # Answer in the language the caller spoke: the text's main script wins over the recogniser's label, which
        # can flip on a mixed utterance ("我的 work permit 怎么延期" is a Chinese question).
        answer_lang = script if script in ("en", "zh") else (hint or "en")

        awaiting = state.awaiting_application_number
        state.awaiting_application_number = False
        pending = state.pending_application
        state.pending_application = None
        has_content = any(ch.isalnum() for ch in norm)
        retrieval = index.retriever.retrieve(raw) if other is None and has_content else Retrieval((), 0.0, "none")
        best = retrieval.best
        agent_request = other is None and is_agent_request(norm)

        number = parse_application_number(raw) if other is None and not agent_request else None
        # Digits alone may be a phone number or a date: they are an application number only after we asked for one,
        # or in a question confidently about progress. Letters first (WP...) say it is one.
        about_progress = best is not None and best.entry.topic == WORK_PERMIT_PROGRESS and (
            best.score >= self.settings.answer_threshold)
        progress_turn = PolicyInput(WORK_PERMIT_PROGRESS, 1.0, 1.0, "high", True, True, True, False, None)
        if pending is not None and other is None and not agent_request:
            # We asked for the second factor. A date is one even when it looks like a number (19900315); a number
            # with its letters is a new application; anything else long enough is the end of a passport number.
            factor = SecondFactor(dates=parse_dates(raw)) if parse_dates(raw) else None
            if factor is None and not (number is not None and number.letters):
                factor = parse_second_factor(raw)
            if factor is not None:
                choose(progress_turn, state, now=now, config=self.policy)
                return self._progress(pending, factor, answer_lang, state)
        if number is not None and (awaiting or pending is not None or number.letters or about_progress):
            choose(progress_turn, state, now=now, config=self.policy)
            return self._ask_second_factor(number, answer_lang, state)

        verdict = choose(
            PolicyInput(
                topic=best.entry.topic if best else None,
                score=best.score if best else 0.0,
                margin=retrieval.margin,
                confidence=best.entry.confidence if best else None,
                in_domain=self._in_domain(retrieval),
                has_content=has_content,
                topical=bool(topical_words(norm)),
                agent_request=agent_request,
                other_language=other,
            ),
            state,
            now=now,
            config=self.policy,
        )
        score = best.score if best else 0.0
        signal = retrieval.signal
        if verdict.kind == "language_not_served":
            return Decision("agent", HUMAN_AGENT, None, hint or "en", self._prompt("language_not_served", "both"),
                            0.0, 0.0, verdict.reason, other)
        if verdict.kind == "agent_request":
            entry_id = best.entry.id if best and best.entry.topic == HUMAN_AGENT else None
            return Decision("agent", HUMAN_AGENT, entry_id, answer_lang, self._prompt("transferring", answer_lang),
                            score, retrieval.margin, verdict.reason)
        if verdict.kind == "agent_after_misses":
            # The caller did not ask for a person: say why they are being put through.
            return Decision("agent", HUMAN_AGENT, None, answer_lang,
                            self._prompt("no_answer_transfer", answer_lang),
                            score, retrieval.margin, verdict.reason)
        if verdict.kind == "clarify":
            entry_id = best.entry.id if best and best.entry.topic == verdict.topic else None
            return Decision("clarify", verdict.topic, entry_id, answer_lang,
                            self._prompt("repeat", answer_lang), score, retrieval.margin, verdict.reason)
        if verdict.kind == "out_of_scope":
            entry = self._out_of_scope_entry(retrieval, index)
            answer = entry.answer[answer_lang] if entry else self._fallback("out_of_scope_intro", _DEFAULT_OUT_OF_SCOPE,
                                                                           answer_lang)
            return Decision("answer", OUT_OF_SCOPE, entry.id if entry else None, answer_lang, answer, score,
                            retrieval.margin, f"{verdict.reason}:{signal}")
        # A confident answer from the knowledge base.
        entry = best.entry
        if entry.topic == WORK_PERMIT_PROGRESS:
            state.awaiting_application_number = True  # its answer asks for the number; the next turn may be it
        answer = entry.answer[answer_lang]
        reason = signal
        if self.rewriter is not None:
            facts = [c.entry.answer[answer_lang] for c in retrieval.candidates[: self.settings.llm.entries]
                     if c.entry.topic == entry.topic]
            rewritten = self.rewriter.rewrite(question=raw, facts=facts, language=answer_lang)
            if rewritten is not None:
                answer, reason = rewritten, f"{signal}+llm"
            else:
                reason = f"{signal}+llm_fallback"
        return Decision("answer", entry.topic, entry.id, answer_lang, answer, score, retrieval.margin, reason)

    def _in_domain(self, retrieval: Retrieval) -> bool:
        """The question shares hotline words with an in-scope entry (lexically or by sound), not just meaning."""
        for c in retrieval.candidates:
            if c.entry.topic in IN_SCOPE_TOPICS and max(c.signals.get("bm25", 0.0), c.signals.get("pinyin", 0.0)) >= 0.3:
                return True
        return False

    def _out_of_scope_entry(self, retrieval: Retrieval, index: KnowledgeIndex) -> KnowledgeEntry | None:
        for c in retrieval.candidates:
            if c.entry.topic == OUT_OF_SCOPE:
                return c.entry
        return index.out_of_scope[0] if index.out_of_scope else None

    def _fallback(self, key: str, defaults: dict[str, str], language: str, **params: object) -> str:
        if self.prompts.has(key):
            return self._prompt(key, language, **params)
        return defaults[language].format(**params)

    def _lookup_limit(self, language: str) -> Decision:
        answer = self._fallback("progress_lookup_limit", _DEFAULT_PROGRESS["progress_lookup_limit"], language)
        return Decision("agent", HUMAN_AGENT, None, language, answer, 1.0, 1.0, "application_lookup_limit")

    def _ask_second_factor(self, number: ApplicationNumber, language: str, state: DialogState) -> Decision:
        """A number alone is never looked up: the answer must not tell whether it exists (numbers can be walked)."""
        if state.lookups >= MAX_LOOKUPS_PER_CALL:
            return self._lookup_limit(language)
        state.pending_application = number
        answer = self._fallback("progress_ask_factor", _DEFAULT_PROGRESS["progress_ask_factor"], language,
                                number=number.spoken(language))
        return Decision("answer", WORK_PERMIT_PROGRESS, None, language, answer, 1.0, 1.0, "application_factor_needed")

    def _progress(self, number: ApplicationNumber, factor: SecondFactor, language: str,
                  state: DialogState) -> Decision:
        state.lookups += 1
        application = self.applications.find(number) if self.applications is not None else None
        if application is None or not application.verified_by(factor):
            # Unknown number and wrong factor get the same words: neither may be told apart by a caller.
            if state.lookups >= MAX_LOOKUPS_PER_CALL:
                return self._lookup_limit(language)
            answer = self._fallback("progress_not_found", _DEFAULT_PROGRESS["progress_not_found"], language,
                                    number=number.spoken(language))
            return Decision("answer", WORK_PERMIT_PROGRESS, None, language, answer, 1.0, 1.0,
                            "application_number_unknown")
        answer = self._fallback(
            "progress_found", _DEFAULT_PROGRESS["progress_found"], language,
            number=" ".join(application.number), status=application.status(language),
            updated=_spoken_date(application.updated, language),
        )
        return Decision("answer", WORK_PERMIT_PROGRESS, None, language, answer, 1.0, 1.0, "application_lookup")
