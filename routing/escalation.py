"""Escalation policy: pure code, no I/O, the time passed in as `now` (tested on a virtual clock).

Given what retrieval found and what the caller said, choose: answer, clarify, or agent. The rules, in order:
1. an unserved language -> a short bilingual message and the agent queue;
2. an explicit request for a person, in either language -> the agent queue at once;
3. a confident match -> answer (the human_agent topic always routes to agent);
4. nothing matched and the question has no hotline words -> out of scope: say what we cover, offer a person;
5. otherwise a miss: the first asks to rephrase, the second in a row offers a person. An utterance with no word
   that says what it is about ("hello?", "I have a question") is a miss whatever it matched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import jieba
from pypinyin import lazy_pinyin

from routing.retrieval_text import HAN_RUN_RE, fold_syllable

if TYPE_CHECKING:
    from routing.progress import ApplicationNumber
from routing.topics import HOTLINE_INFO, HUMAN_AGENT, IN_SCOPE_TOPICS, OUT_OF_SCOPE

# --- explicit requests for a person -------------------------------------------------------------------------------
# Whole-word English patterns: "agent" alone would also match "my agency" or "travel agent applies for me", so the
# person words need a verb of asking or stand alone as the whole utterance.
_EN_PERSON = (
    r"(?:a |an |the |some |real |live |actual |human |)"
    r"(?:person|human|human being|agent|operator|representative|rep|somebody|someone|staff|officer|people|advisor|"
    r"adviser|customer service|consultant|man|woman)"
)
_EN_PATTERNS = [
    rf"\b(?:speak|talk|chat)\s+(?:to|with)\s+(?:a |an |the |some )?(?:real |live |actual |human )?{_EN_PERSON}\b",
    rf"\b(?:transfer|connect|put)\s+(?:me\s+)?(?:through\s+)?(?:to|with)\s+{_EN_PERSON}\b",
    r"\b(?:real|live|actual)\s+(?:person|human|agent|operator|people)\b",
    r"\bhuman\s+(?:agent|operator|being|service|support)\b",
    r"\b(?:get|give|want|need)\s+(?:me\s+)?(?:a |an |the )?(?:real |live |human )?(?:person|human|operator|agent|representative)\b",
    r"\boperator\b",
    r"^\s*(?:an? |the )?(?:agent|human|person|representative|operator|customer service)(?:\s+please)?\s*[.!?]*\s*$",
    r"\bnot\s+(?:a\s+)?(?:robot|machine|bot)\b",
    r"\b(?:stop|no more)\s+(?:the\s+)?(?:robot|machine|bot)\b",
    r"\b(?:don't|do not|dont)\s+want\s+(?:a\s+|the\s+|to\s+(?:talk|speak)\s+(?:to|with)\s+(?:a\s+|the\s+)?)?(?:robot|machine|bot)\b",
]
_EN_RE = re.compile("|".join(f"(?:{p})" for p in _EN_PATTERNS), re.IGNORECASE)

# "帮我转一下 agent": a Chinese verb of transferring with an English person word.
_MIXED_RE = re.compile(r"(?:转|转接|接通|找)(?:一下|给|到)*\s*(?:an?\s+)?(?:agent|operator|human|real person|person)\b",
                       re.IGNORECASE)

# Chinese is matched on jieba words, not substrings: 外国人工作 contains 人工 across a word boundary, and 人工智能
# (artificial intelligence, an urgently-needed job field) is one word that is not a request.
_ZH_AGENT_WORDS = frozenset(
    "人工 转人工 人工服务 人工客服 人工台 真人 客服 客服人员 接线员 话务员 转接 人工坐席 坐席".split()
)
_ZH_PATTERNS = re.compile(
    r"(?:找|跟|和|同|让|要|叫|请)(?:一个|个|位|一位)?(?:工作人员|服务人员|专员|人)(?:来)?(?:跟我|和我|给我)?"
    r"(?:说|讲|聊|谈|沟通|接|通话|服务|解答)"
    r"|找个(?:工作人员|人)|(?:不要|不想|别让)(?:跟|和)?(?:机器人|机器)"
)
# Recognition errors keep the sound: 转任公 for 转人工. Matched on folded pinyin of the whole utterance, as three
# syllables (zhuan ren gong) or an utterance of nothing but ren gong, which no other question sounds like.
_AGENT_SOUNDS = tuple(tuple(fold_syllable(x) for x in p.split()) for p in ("zhuan ren gong", "zhuan jie ren gong"))
_REN_GONG = [fold_syllable("ren"), fold_syllable("gong")]


def _sounds_like_agent_request(han: str) -> bool:
    syllables = [fold_syllable(s) for s in lazy_pinyin(han, errors="ignore")]
    if syllables and len(syllables) % 2 == 0 and all(
        syllables[i : i + 2] == _REN_GONG for i in range(0, len(syllables), 2)
    ):
        return True
    for pattern in _AGENT_SOUNDS:
        n = len(pattern)
        if any(tuple(syllables[i : i + n]) == pattern for i in range(len(syllables) - n + 1)):
            return True
    return False


def is_agent_request(text: str) -> bool:
    """True when the caller asks for a person (人工, 转人工, 真人, operator, agent, real person ...)."""
    if _EN_RE.search(text) or _MIXED_RE.search(text):
        return True
    han = "".join(HAN_RUN_RE.findall(text))
    if not han:
        return False
    if any(word in _ZH_AGENT_WORDS for word in jieba.lcut(han)):
        return True
    return bool(_ZH_PATTERNS.search(han)) or _sounds_like_agent_request(han)


# --- the policy -----------------------------------------------------------------------------------------------------
@dataclass
class DialogState:
    """What the policy remembers about one call; created by `Router.new_dialog()`, mutated by `decide()`."""

    misses: int = 0  # consecutive turns we could not answer
    last_miss_at: float | None = None
    awaiting_application_number: bool = False  # we asked for a work-permit application number last turn
    pending_application: ApplicationNumber | None = None  # said last turn; its second factor is awaited now
    lookups: int = 0  # application look-ups tried in this call (at most progress.MAX_LOOKUPS_PER_CALL)
    turns: int = 0
    history: list[str] = field(default_factory=list)  # routes decided, in order (no caller text)


@dataclass(frozen=True)
class PolicyInput:
    topic: str | None  # best retrieved topic (None: nothing retrieved)
    score: float
    margin: float
    confidence: str | None  # the best entry's confidence (high | medium | low)
    in_domain: bool  # the question uses the hotline's vocabulary
    has_content: bool  # the text has any words at all
    topical: bool  # it has words that say what it is about (not only "hello", "I have a question", "嗯那个")
    agent_request: bool
    other_language: str | None


@dataclass(frozen=True)
class PolicyVerdict:
    route: str  # answer | clarify | agent
    kind: str  # what to say: entry | clarify | agent_request | agent_after_misses | language_not_served | out_of_scope
    topic: str
    reason: str


@dataclass(frozen=True)
class PolicyConfig:
    answer_threshold: float = 0.45
    out_of_scope_threshold: float = 0.4
    min_margin: float = 0.0
    misses_before_agent: int = 2
    miss_memory_s: float = 180.0  # a miss longer ago than this no longer counts towards "twice in a row"


def choose(inp: PolicyInput, state: DialogState, *, now: float, config: PolicyConfig) -> PolicyVerdict:
    """Choose the route; updates `state` (turns, misses). Pure apart from that state."""
    state.turns += 1
    if state.last_miss_at is not None and now - state.last_miss_at > config.miss_memory_s:
        state.misses = 0
    verdict = _choose(inp, state, config)
    if verdict.kind == "clarify":
        state.misses += 1
        state.last_miss_at = now
    elif verdict.route == "agent" or verdict.kind in ("entry", "out_of_scope"):
        state.misses = 0
        state.last_miss_at = None
    state.history.append(verdict.route)
    return verdict


def _choose(inp: PolicyInput, state: DialogState, config: PolicyConfig) -> PolicyVerdict:
    if inp.other_language:
        return PolicyVerdict("agent", "language_not_served", HUMAN_AGENT, "language_not_served")
    if inp.agent_request:
        return PolicyVerdict("agent", "agent_request", HUMAN_AGENT, "explicit_agent_request")
    if not inp.topical:
        return _miss(inp, state, config)
    confident = (
        inp.topic is not None
        and inp.score >= config.answer_threshold
        and (inp.margin >= config.min_margin or inp.topic in (OUT_OF_SCOPE,))
    )
    if confident and inp.topic == HUMAN_AGENT:
        return PolicyVerdict("agent", "agent_request", HUMAN_AGENT, "human_agent_topic")
    if confident and inp.topic == OUT_OF_SCOPE:
        return PolicyVerdict("answer", "out_of_scope", OUT_OF_SCOPE, "out_of_scope_match")
    if confident:
        return PolicyVerdict("answer", "entry", inp.topic, "confident_match")
    if inp.topic == OUT_OF_SCOPE:
        # Closest to the out-of-scope examples, even weakly: saying what the hotline covers is never a wrong answer.
        return PolicyVerdict("answer", "out_of_scope", OUT_OF_SCOPE, "out_of_scope_match")
    if not inp.in_domain and inp.score < config.out_of_scope_threshold:
        return PolicyVerdict("answer", "out_of_scope", OUT_OF_SCOPE, "no_hotline_words")
    return _miss(inp, state, config)


def _miss(inp: PolicyInput, state: DialogState, config: PolicyConfig) -> PolicyVerdict:
    if state.misses + 1 >= config.misses_before_agent:
        return PolicyVerdict("agent", "agent_after_misses", HUMAN_AGENT, "repeated_low_confidence")
    # A clarification is about the best guess when there is one; when nothing came close the caller is talking to
    # the hotline itself ("hello?", "I have a question"), which is the hotline_info topic.
    guessed = inp.topical and inp.topic in IN_SCOPE_TOPICS and inp.score >= config.out_of_scope_threshold
    topic = inp.topic if guessed else HOTLINE_INFO
    reason = "low_confidence" if inp.topical else ("vague" if inp.has_content else "no_words")
    return PolicyVerdict("clarify", "clarify", topic, reason)
