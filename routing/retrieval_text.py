"""Text preparation for retrieval: normalisation, script of a text, tokens for BM25 and for pinyin matching.

Callers' text comes from speech recognition, so it is noisy: Whisper may write traditional characters, full-width
letters, or a homophone of the right word (工作需可 for 工作许可). Each function here is pure and cheap.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import jieba
import zhconv
from pypinyin import Style, lazy_pinyin

jieba.setLogLevel(60)  # jieba prints its dictionary loading to stderr otherwise

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
HAN_RE = re.compile(f"[{_HAN}]")
HAN_RUN_RE = re.compile(f"[{_HAN}]+")
LATIN_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+")
LATIN_LETTER_RE = re.compile(r"[A-Za-z]")
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

EN_STOPWORDS = frozenset(
    """a an the and or but if of to in on at for from by with about into over after before as is are was were be
    been being am do does did doing have has had having i me my mine we our us you your yours he she it its they
    them their this that these those there here what which who whom whose when where why how can could would should
    will shall may might must please hi hello hey thanks thank so just also too very really then than some any
    all each other such only own same not no yes ok okay um uh er ah oh well like want wanted know tell let get
    got need needs s t d ll m re ve i'm it's don't""".split()
)
ZH_STOPWORDS = frozenset(
    "的 我的 你的 了 吗 呢 吧 啊 呀 嗯 哦 我 你 他 她 它 我们 你们 是 在 有 和 与 或 就 都 也 还 要 想 请问 请 一下 那 这 那个 这个 什么 怎么 怎样 如何 "
    "可以 能 能不能 可不可以 会 需要 应该 哪 哪里 哪儿 多少 几 个 吗？ ， 。 ？ ！ 、 你好 您好 您 谢谢 麻烦 问 问一下".split()
)


# Words that say a caller wants to ask, or fill a pause, without saying about what: an utterance made only of these
# (and stop words) is too vague to answer or to call out of scope -- the caller is asked to go on.
GENERIC_WORDS = frozenset(
    """question questions ask asking asked wonder wondering something thing things stuff help about uh um umm hmm
    erm yeah yep hello hallo hey hi sorry excuse anyone there morning afternoon evening good""".split()
)
ZH_GENERIC_WORDS = frozenset(
    "问 问个 问问 问题 事情 事儿 事 请教 咨询 一下 那个 这个 喂 嗯 呃 啊 哦 哎 诶 好 你好 您好 想 知道 个 吗 呢 哈 "
    "我想 我要 想问 请问 问一下 我想问 你们 有 没有 帮 帮我 一件".split()
)


def topical_words(text: str) -> list[str]:
    """Content words of normalised text: not stop words, not fillers, not words of asking."""
    words = [w for w in LATIN_WORD_RE.findall(text) if w not in EN_STOPWORDS and w not in GENERIC_WORDS]
    for run in HAN_RUN_RE.findall(text):
        words.extend(w for w in _jieba_words(run) if w not in ZH_STOPWORDS and w not in ZH_GENERIC_WORDS)
    return words


def normalize(text: str) -> str:
    """NFKC (full-width -> ASCII), simplified Chinese, lower case, control characters removed."""
    text = unicodedata.normalize("NFKC", text)
    text = CONTROL_RE.sub(" ", text)
    if HAN_RE.search(text):
        text = zhconv.convert(text, "zh-cn")
    return text.lower()


def script_counts(text: str) -> tuple[int, int, int]:
    """(Han characters, Latin words, letters of any other script)."""
    han = len(HAN_RE.findall(text))
    latin = len(re.findall(r"[A-Za-z]+", text))
    other = sum(1 for ch in text if ch.isalpha() and not HAN_RE.match(ch) and not ch.isascii())
    return han, latin, other


def main_language(text: str) -> str | None:
    """'zh' if Han characters are the main script, 'en' if Latin is, 'other' for another script, None if no letters.

    A Chinese word is about 1.5 characters, so Han characters are weighed against Latin words at that rate: in
    "我的work permit怎么延期" Chinese is the main language, in "how do I apply for a 工作许可" English is.
    """
    han, latin, other = script_counts(text)
    han_words = han / 1.5
    if other > han and other > latin * 3:
        return "other"
    if han_words == 0 and latin == 0:
        return None
    return "zh" if han_words >= latin else "en"


def _stem(word: str) -> str:
    # Light suffix stripping: enough for "permits"/"permit", "extending"/"extend", "renewed"/"renew".
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("ches", "shes", "xes", "sses")):
                continue
            return word[: len(word) - len(suffix)] + repl
    return word


def english_tokens(text: str) -> list[str]:
    return [_stem(w) for w in LATIN_WORD_RE.findall(text) if w not in EN_STOPWORDS]


@lru_cache(maxsize=4096)
def _jieba_words(run: str) -> tuple[str, ...]:
    return tuple(jieba.cut_for_search(run))


def chinese_tokens(text: str) -> list[str]:
    """jieba words (search mode) plus character bigrams: bigrams survive a mis-recognised word boundary."""
    tokens: list[str] = []
    for run in HAN_RUN_RE.findall(text):
        tokens.extend(w for w in _jieba_words(run) if w not in ZH_STOPWORDS)
        tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        if len(run) == 1 and run not in ZH_STOPWORDS:
            tokens.append(run)
    return tokens


# Hotline terms callers say in English inside a Chinese sentence ("我的 work permit 快到期了"). A mixed question
# shares its English words with an entry's English phrasings and its Chinese words with the Chinese ones, never all
# with one phrasing; adding the Chinese term lets the Chinese side match as a whole (lexically and by pinyin).
# Longest terms first, so "work permit" is taken before "permit".
MIXED_GLOSSARY: tuple[tuple[str, str], ...] = (
    ("permanent residence", "永久居留"),
    ("residence permit", "居留许可"),
    ("work permit", "工作许可"),
    ("single window", "单一窗口"),
    ("social insurance", "社会保险 社保"),
    ("income tax", "个人所得税 个税"),
    ("housing allowance", "住房补贴"),
    ("foreign exchange", "外汇 购汇"),
    ("notification letter", "工作许可通知"),
    ("cancellation certificate", "注销证明"),
    ("application status", "办理进度"),
    ("change job", "更换用人单位"),
    ("permit", "许可"),
    ("visa", "签证"),
    ("extension", "延期"),
    ("extend", "延期"),
    ("renew", "延期 续签"),
    ("renewal", "延期 续签"),
    ("expire", "到期"),
    ("cancel", "注销"),
    ("cancellation", "注销"),
    ("lost", "遗失 补办"),
    ("replace", "补办"),
    ("apply", "申请"),
    ("application", "申请"),
    ("process", "流程"),
    ("progress", "进度"),
    ("status", "进度"),
    ("salary", "工资 薪酬"),
    ("dollar", "外汇"),
    ("tax", "税"),
    ("degree", "学历"),
    ("category", "类"),
    ("talent", "人才"),
    ("family", "家属"),
    ("staff", "员工"),
    ("employer", "用人单位"),
    ("documents", "材料"),
    ("hotline", "热线"),
    ("lecture", "讲堂"),
    ("salon", "沙龙"),
    ("ebook", "电子书"),
)
_GLOSSARY_RE = [(re.compile(rf"\b{re.escape(en)}(?:s|es|ed|ing)?\b"), zh) for en, zh in MIXED_GLOSSARY]


def expand_mixed(text: str) -> str:
    """Normalised text with the Chinese terms of its English hotline words appended, if it mixes both scripts."""
    if not HAN_RE.search(text) or not re.search(r"[a-z]{2}", text):
        return text
    extra = []
    rest = text
    for pattern, zh in _GLOSSARY_RE:
        if pattern.search(rest):
            extra.append(zh)
            rest = pattern.sub(" ", rest)
    return text + (" " + " ".join(extra) if extra else "")


def lexical_tokens(text: str) -> list[str]:
    """Tokens for BM25 of normalised text, any mix of English and Chinese."""
    return english_tokens(text) + chinese_tokens(text)


# Initials and finals that Mandarin speakers (and recognisers) commonly confuse are folded together, so that a
# near-homophone still matches: zh/z, ch/c, sh/s, n/l, final -ng/-n, and -iu (i-o-u) with -ou: the glide is short
# in fast speech, and Whisper wrote the hotline voice's 居留 (ju liu) as 举楼 (ju lou) in `hotline bench call`.
# Only l, n, d and m take both finals, so -iu after j, q, x folds onto no other syllable.
_FOLD_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("l", "n"))
_FOLD_FINALS = (("ing", "in"), ("eng", "en"), ("ang", "an"), ("iu", "ou"))


@lru_cache(maxsize=8192)
def fold_syllable(syllable: str) -> str:
    for a, b in _FOLD_INITIALS:
        if syllable.startswith(a):
            syllable = b + syllable[len(a) :]
            break
    for a, b in _FOLD_FINALS:
        if syllable.endswith(a):
            syllable = syllable[: -len(a)] + b
            break
    return syllable


@lru_cache(maxsize=4096)
def _run_pinyin(run: str) -> tuple[str, ...]:
    return tuple(fold_syllable(s) for s in lazy_pinyin(run, style=Style.NORMAL, errors="ignore"))


def pinyin_tokens(text: str) -> list[str]:
    """Toneless, folded pinyin syllable bigrams of the Han text: 工作需可 and 工作许可 give the same tokens."""
    tokens: list[str] = []
    for run in HAN_RUN_RE.findall(text):
        syllables = _run_pinyin(run)
        if len(syllables) == 1:
            tokens.append(syllables[0])
        tokens.extend(f"{a}_{b}" for a, b in zip(syllables, syllables[1:]))
    return tokens


# Hotline terms of three syllables or more (the Chinese side of the glossary): a run of Han characters that sounds
# exactly like one (folded pinyin) but is written otherwise is a recognition error and is written as the term.
# Pinyin matching alone scores such a run, but the embedding and BM25 see the wrong characters: Whisper wrote the
# hotline voice's 居留许可 as 菊漏许可 in one call, and 许可/办理 then pulled the question to work_permit_apply.
# Three syllables at least: one or two syllables sound like too many ordinary words.
HOMOPHONE_TERMS: tuple[str, ...] = tuple(sorted(
    {t for _, zh in MIXED_GLOSSARY for t in zh.split() if len(t) >= 3}, key=lambda t: (-len(t), t)))


@lru_cache(maxsize=1)
def _term_sounds() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((t, _run_pinyin(t)) for t in HOMOPHONE_TERMS)


def correct_homophones(text: str) -> str:
    """Normalised text with every Han stretch that sounds like a hotline term (HOMOPHONE_TERMS) written as it."""
    if not HAN_RE.search(text):
        return text

    def fix(match: re.Match[str]) -> str:
        run = list(match.group())
        sounds = _run_pinyin(match.group())
        if len(sounds) != len(run):  # a character pypinyin does not know: no safe alignment
            return match.group()
        for term, term_sounds in _term_sounds():
            n = len(term)
            for i in range(len(run) - n + 1):
                if sounds[i : i + n] == term_sounds and "".join(run[i : i + n]) != term:
                    run[i : i + n] = list(term)
        return "".join(run)

    return HAN_RUN_RE.sub(fix, text)
