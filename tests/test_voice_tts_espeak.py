"""The espeak-ng voice (pyttsx3): both languages, chunk format, bad input, thread safety, the `hotline say` command."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from voice.audio import decode_file, pcm16_to_float
from voice.settings import VoiceSettings
from voice.tts import build_synthesizer, pcm16_of, to_telephone
from voice.tts.espeak import EspeakSynthesizer, to_pinyin
from voice.tts.scoring import errors
from voice.types import SAMPLE_RATE


@pytest.fixture(scope="module")
def espeak():
    synth = EspeakSynthesizer(settings=VoiceSettings(voice="espeak"))
    synth.warm_up()
    yield synth
    synth.close()


def check_chunks(chunks, text_sentences: int, language: str):
    assert len(chunks) == text_sentences
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    for c in chunks:
        assert c.sample_rate == SAMPLE_RATE and c.language == language
        assert len(c.pcm16) % 2 == 0 and c.duration_s > 0.3
        assert c.synthesis_s >= 0
        samples = pcm16_to_float(c.pcm16)
        assert np.abs(samples).max() > 0.05  # speech, not silence


def test_english_sentence_by_sentence(espeak):
    chunks = list(espeak.synthesize("Hello. Please hold the line. Thank you!", "en"))
    check_chunks(chunks, 3, "en")
    assert chunks[1].text == "Please hold the line."


def test_mandarin_through_pinyin(espeak):
    assert to_pinyin("您好，工作许可。") == "nin2 hao3 , gong1 zuo4 xu3 ke3 ."
    chunks = list(espeak.synthesize("您好。请问有什么可以帮您？", "zh"))
    check_chunks(chunks, 2, "zh")


def test_mixed_mandarin_with_english_words(espeak):
    with_english = pcm16_of(espeak.synthesize("请登录Single Window办理。", "zh"))
    without = pcm16_of(espeak.synthesize("请登录办理。", "zh"))
    assert len(with_english) > len(without) * 1.2  # the English words are spoken, not dropped


@pytest.mark.parametrize("text", ["", "   ", "\n", "😀🎉", "。！？"])
def test_nothing_to_say_yields_no_chunks(espeak, text):
    assert list(espeak.synthesize(text, "en")) == []
    assert list(espeak.synthesize(text, "zh")) == []


def test_bad_arguments_are_clear_errors(espeak):
    with pytest.raises(ValueError):
        list(espeak.synthesize("hello", "fr"))
    with pytest.raises(TypeError):
        list(espeak.synthesize(None, "en"))


def test_worker_serves_many_threads_at_once(espeak):
    # Different lengths, so a result delivered to the wrong thread would show up as a wrong duration.
    texts = ["Yes.", "Please hold the line.", "Your work permit application has been received and is being processed.",
             "好的。", "请稍候，正在为您转接人工客服。", "One two three four five six seven eight nine ten."]
    langs = ["en", "en", "en", "zh", "zh", "en"]
    alone = [sum(c.duration_s for c in espeak.synthesize(t, lang)) for t, lang in zip(texts, langs)]
    results: dict[int, float] = {}
    failures = []

    def work(i):
        try:
            for _ in range(2):
                results[i] = sum(c.duration_s for c in espeak.synthesize(texts[i], langs[i]))
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures and not any(t.is_alive() for t in threads)
    for i, duration in results.items():
        assert duration == pytest.approx(alone[i], rel=0.1), texts[i]


def test_telephone_output_is_8k_mulaw(espeak):
    chunk = next(iter(espeak.synthesize("Hello.", "en")))
    mulaw = to_telephone(chunk)
    assert len(mulaw) == pytest.approx(len(chunk.pcm16) // 4, abs=2)  # 2 bytes/sample at 16 kHz -> 1 byte at 8 kHz


def test_cache_over_espeak_returns_identical_audio_without_resynthesis():
    synth = build_synthesizer(VoiceSettings(voice="espeak", tts_cache_size=4))
    first = pcm16_of(synth.synthesize("Please hold.", "en"))
    misses = synth.misses
    second = pcm16_of(synth.synthesize("Please hold.", "en"))
    assert second == first and synth.misses == misses and synth.hits == 1


def test_english_round_trip_is_reported_not_targeted(espeak, recognizer):
    # espeak-ng is the fall-back voice: only a loose bound here (the figure is in `hotline bench tts`).
    texts = ["Please bring your passport and your employment contract.", "To apply for a work permit, call 12345."]
    errs = total = 0
    for text in texts:
        audio = pcm16_to_float(pcm16_of(espeak.synthesize(text, "en")))
        heard = recognizer.transcribe(audio, language="en", vocabulary=False)
        e, n = errors(text, heard.text if heard else "", "en")
        errs, total = errs + e, total + n
    assert errs / total <= 0.35


def test_hotline_say_writes_wav_and_mulaw(tmp_path):
    from server.cli import main

    wav = tmp_path / "out.wav"
    assert main(["say", "您好，这里是外国人才服务热线。", "--voice", "espeak", "-o", str(wav)]) == 0
    audio = decode_file(wav)
    assert len(audio) / SAMPLE_RATE > 1.0
    ul = tmp_path / "out.ul"
    assert main(["say", "Hello.", "--voice", "espeak", "--language", "en", "-o", str(ul)]) == 0
    assert ul.stat().st_size > 4000
    assert main(["say", "😀", "--voice", "espeak", "-o", str(tmp_path / "none.wav")]) == 2
