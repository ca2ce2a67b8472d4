"""Recognition with the real Whisper base model on real recordings, against the targets."""
from __future__ import annotations

import numpy as np
import pytest

from voice.evaluation import error_counts, error_rate
from voice.streaming import transcribe_file
from voice.types import SAMPLE_RATE
from voice.audio import decode_file

from conftest import espeak_say

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def manifest(manifest):
    """The development part of the recordings only. Thresholds are what tuning aims at, so they may look at dev and
    never at the held-out test part, whose figures `hotline bench asr` reports (recordings_fixtures/README.md)."""
    return [c for c in manifest if c.split == "dev"]


def _score(recognizer, clips, language):
    errors = total = 0
    for clip in clips:
        t = recognizer.transcribe(decode_file(clip.path))
        e, n = error_counts(clip.reference, t.text if t else "", language)
        errors, total = errors + e, total + n
    return errors / total


def test_english_wer_at_most_10_percent(recognizer, manifest):
    wer = _score(recognizer, [c for c in manifest if c.language == "en"], "en")
    assert wer <= 0.10, f"English WER {wer:.1%}"


def test_mandarin_cer_at_most_18_percent(recognizer, manifest):
    # Two of these references are another recognizer's output (reference_source = model) and agree with Whisper
    # more than a person's would; `hotline bench asr` keeps them out of its figures and shows the CER without them.
    cer = _score(recognizer, [c for c in manifest if c.language == "zh"], "zh")
    assert cer <= 0.18, f"Mandarin CER {cer:.1%}"


def test_language_of_every_english_and_mandarin_recording_of_a_second_or_more(recognizer, manifest):
    for clip in manifest:
        if clip.language not in ("en", "zh", "mixed") or clip.duration_s < 1.0:
            continue
        t = recognizer.transcribe(decode_file(clip.path))
        expected = "en" if clip.language == "en" else "zh"
        assert t is not None and t.language.label == expected, clip.path.name
        assert t.language.source in ("audio", "audio+text")
        assert 0.5 <= t.language.probability <= 1.0


def test_mixed_mandarin_stays_mandarin_and_is_marked_mixed(recognizer, manifest):
    clip = next(c for c in manifest if c.language == "mixed")
    t = recognizer.transcribe(decode_file(clip.path))
    assert t.language.label == "zh" and t.language.mixed


@pytest.mark.parametrize("code", ["ja", "ru"])
def test_unserved_languages_in_real_recordings_are_reported_as_other(recognizer, manifest, code):
    clip = next(c for c in manifest if c.language == f"other:{code}")
    t = recognizer.transcribe(decode_file(clip.path))
    assert t.language.label == "other" and t.language.code == code


@pytest.mark.parametrize("voice,code,text", [
    ("ko", "ko", "안녕하세요. 저는 서울에 살고 있고 회사에서 일하고 있습니다. 오늘 날씨가 정말 좋네요."),
    ("fr", "fr", "Bonjour, je voudrais savoir comment renouveler mon permis de travail à Shanghai, s'il vous plaît."),
])
def test_korean_and_french_synthesised_are_reported_as_other(recognizer, tmp_path, voice, code, text):
    # No real Korean or French recording ships here; espeak-ng speaks them (recordings_fixtures/README.md).
    # espeak-ng's Korean is poor enough that Whisper base may name another Asian language (it heard "th" once);
    # what must hold is that it is reported as an unserved language, never forced into English or Chinese.
    t = recognizer.transcribe(espeak_say(text, voice, tmp_path))
    assert t is not None and t.language.label == "other" and t.language.code not in ("en", "zh")
    if code == "fr":
        assert t.language.code == "fr"


def test_chinese_output_is_simplified(recognizer, manifest):
    for clip in manifest:
        if clip.language == "zh":
            t = recognizer.transcribe(decode_file(clip.path))
            if t is not None:
                from voice.language import to_simplified

                assert t.text == to_simplified(t.text)


def _hum(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    # 50 Hz mains hum with harmonics, as a telephone line picks it up.
    return (0.2 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 150 * t)
            + 0.05 * np.sin(2 * np.pi * 250 * t)).astype(np.float32)


@pytest.mark.parametrize("kind", ["silence", "white_noise", "hum", "quiet_noise"])
def test_no_words_from_silence_or_noise(recognizer, voice_settings, kind):
    rng = np.random.default_rng(1)
    audio = {
        "silence": np.zeros(5 * SAMPLE_RATE, dtype=np.float32),
        "white_noise": (rng.standard_normal(5 * SAMPLE_RATE) * 0.1).astype(np.float32),
        "hum": _hum(5.0),
        "quiet_noise": (rng.standard_normal(5 * SAMPLE_RATE) * 0.003).astype(np.float32),
    }[kind]
    assert transcribe_file(recognizer, audio, settings=voice_settings) == []


@pytest.mark.parametrize("kind", ["white_noise", "hum"])
def test_recognizer_alone_gates_noise(recognizer, kind):
    # Even without the VAD in front (a caller could bypass it), noise must not become words.
    rng = np.random.default_rng(2)
    audio = (rng.standard_normal(3 * SAMPLE_RATE) * 0.1).astype(np.float32) if kind == "white_noise" else _hum(3.0)
    t = recognizer.transcribe(audio)
    assert t is None or not t.text.strip(), t


def test_transcript_describes_itself(recognizer, manifest):
    clip = next(c for c in manifest if c.path.name == "en_jfk.flac")
    t = recognizer.transcribe(decode_file(clip.path), start_s=2.0)
    assert t.engine == "faster-whisper" and t.model == "whisper-base"
    assert t.start_s == 2.0 and t.end_s == pytest.approx(2.0 + clip.duration_s, abs=0.01)
    assert t.recognition_s > 0 and 0 <= t.no_speech_prob <= 1 and t.avg_logprob <= 0


def test_forced_language_is_reported_as_a_hint(recognizer, manifest):
    clip = next(c for c in manifest if c.language == "zh")
    t = recognizer.transcribe(decode_file(clip.path), language="zh")
    assert t.language.label == "zh" and t.language.source == "hint"


def test_language_detection_and_decoding_share_one_encoder_pass(voice_settings, manifest):
    from voice.asr import FasterWhisperEngine, Recognizer

    engine = FasterWhisperEngine(voice_settings)
    calls = {"encode": 0}
    real_encode = engine.encode

    def counting_encode(audio, **window):
        calls["encode"] += 1
        return real_encode(audio, **window)

    engine.encode = counting_encode
    rec = Recognizer(engine=engine, settings=voice_settings)
    t = rec.transcribe(decode_file(next(c for c in manifest if c.language == "zh").path))
    assert t is not None and t.language.label == "zh" and t.language.source != "hint"
    assert calls["encode"] == 1


def test_both_engines_give_the_same_english_text(recognizer, openai_recognizer, manifest):
    errors = total = 0
    for clip in manifest:
        if clip.language != "en":
            continue
        audio = decode_file(clip.path)
        a, b = recognizer.transcribe(audio, language="en"), openai_recognizer.transcribe(audio, language="en")
        e, n = error_counts(a.text, b.text, "en")
        errors, total = errors + e, total + n
    assert errors / total <= 0.05, f"WER between engines {errors / total:.1%}"


def test_bad_input_to_the_recognizer(recognizer):
    assert recognizer.transcribe(np.zeros(0, dtype=np.float32)) is None
    assert recognizer.transcribe(np.zeros(800, dtype=np.float32)) is None
    with pytest.raises(ValueError, match="mono"):
        recognizer.transcribe(np.zeros((2, 16000), dtype=np.float32))
    # Longer than Whisper's window: cut to 30 s, not an error.
    long = np.tile(decode_file(__import__("conftest").FIXTURES / "en_one_two_three.wav"), 14)
    t = recognizer.transcribe(long)
    assert t is not None and t.end_s - t.start_s <= 30.0 + 1e-6 and t.language.label == "en"


def test_timestamped_decode_drops_segments_that_start_after_the_speech():
    from voice.asr import _content_tokens

    eot, ts = 100, 200  # token ids below eot are text; ids from ts on are timestamps of 0.02 s each
    # <0.00> a b <1.00><1.00> c <2.00><2.90> d d <3.40>  for 3.0 s of speech: the last segment starts at 2.9 s
    ids = [ts, 1, 2, ts + 50, ts + 50, 3, ts + 100, ts + 145, 4, 4, ts + 170]
    assert _content_tokens(ids, eot=eot, timestamp_begin=ts, content_s=3.0) == [1, 2, 3]
    assert _content_tokens(ids, eot=eot, timestamp_begin=ts, content_s=4.0) == [1, 2, 3, 4, 4]
    assert _content_tokens([1, 2, eot], eot=eot, timestamp_begin=ts, content_s=3.0) == [1, 2]


def test_a_decode_that_says_the_same_words_twice_in_a_row_is_a_loop():
    # Too short for the compression ratio: "Go forward 10m. Go forward 10m." for 2.8 s of "go forward ten metres".
    from voice.asr import Decoded, _repeats_itself

    assert Decoded("Go forward 10m. Go forward 10m.", -0.6, 0.04).looping
    assert _repeats_itself("我想问一下工作许可我想问一下工作许可")
    assert _repeats_itself("登录Single Window办理，登录Single Window办理")  # words of both scripts, apart
    # What callers say: a repeated word or two, a repeated short Chinese word, a sentence with repeated words apart.
    for text in ("I need, I need a work permit.", "yes, yes, yes, yes", "对不起对不起", "你好你好",
                 "ask not what your country can do for you, ask what you can do for your country"):
        assert not _repeats_itself(text) and not Decoded(text, -0.3, 0.05).looping, text


def test_a_segment_that_closes_after_the_audio_has_ended_is_found_where_it_opened():
    # "...of types<6.60><6.60> composed to form letterpress, as all books, ... consist<29.04>" for 8.8 s of speech:
    # the decoder ran on past the audio; what came before it stands, its audio is decoded again from 6.60 s.
    from voice.asr import _overrun_segment

    eot, ts = 100, 200
    ids = [ts, 1, 2, ts + 330, ts + 330, 3, 4, 5, ts + 1452, 100]
    assert _overrun_segment(ids, eot=eot, timestamp_begin=ts, content_s=8.8) == (4, pytest.approx(6.6))
    # A close inside the silent margin is Whisper's coarse timing, not an overrun.
    assert _overrun_segment(ids[:8] + [ts + 480, 100], eot=eot, timestamp_begin=ts, content_s=8.8) is None
    # An overrun in the only segment, or after segments without text, leaves nothing to keep: left as it is.
    assert _overrun_segment([ts, 1, 2, ts + 1452], eot=eot, timestamp_begin=ts, content_s=8.8) is None
    assert _overrun_segment([ts, ts + 50, ts + 50, 1, 2, ts + 1452], eot=eot, timestamp_begin=ts, content_s=8.8) is None
    # Text without an opening timestamp: the timestamp after it closes the segment, the next one opens.
    assert _overrun_segment([1, 2, ts + 100, ts + 100, 3, ts + 1000], eot=eot, timestamp_begin=ts,
                            content_s=8.8) == (3, pytest.approx(2.0))


def test_a_timestamped_decode_is_split_into_its_segments():
    from voice.asr import _segments

    eot, ts = 100, 200
    # a b <1.00> (no opening) <1.00> c <2.00><2.00> d (stopped inside) ; eot and other specials are not text
    segs = _segments([1, 2, ts + 50, ts + 50, 3, ts + 100, ts + 100, 4, eot, eot + 5], eot=eot, timestamp_begin=ts)
    assert [(s.opening, s.start_s, s.end_s, s.tokens) for s in segs] == [
        (None, None, pytest.approx(1.0), (1, 2)), (3, pytest.approx(1.0), pytest.approx(2.0), (3,)),
        (6, pytest.approx(2.0), None, (4,))]
    # An empty segment at the end (<t><t>): Whisper's "the rest is for the next window".
    assert [(s.start_s, s.end_s, s.tokens) for s in _segments([ts, 1, ts + 50, ts + 50], eot=eot, timestamp_begin=ts)
            ] == [(0.0, pytest.approx(1.0), (1,)), (pytest.approx(1.0), None, ())]


def test_utterance_window_is_short_and_hears_what_the_30_s_window_hears(recognizer, voice_settings, manifest):
    from voice.asr import Recognizer

    full = Recognizer(engine=recognizer.engine, settings=voice_settings.model_copy(update={"encoder_window": "full"}))
    assert recognizer.window_s(4.0) == max(4.0 + voice_settings.encoder_margin_s, voice_settings.encoder_min_s) < 30
    assert full.window_s(4.0) is None and recognizer.window_s(29.5) is None
    errors = {"short": [0, 0], "full": [0, 0]}
    for clip in manifest:
        if clip.language not in ("en", "zh"):
            continue
        audio = decode_file(clip.path)
        for name, rec in (("short", recognizer), ("full", full)):
            t = rec.transcribe(audio)
            e, n = error_counts(clip.reference, t.text if t else "", clip.language)
            errors[name][0] += e
            errors[name][1] += n
    rate = {k: e / n for k, (e, n) in errors.items()}
    assert rate["short"] <= rate["full"] + 0.01, rate


def test_a_short_question_in_the_short_window_is_not_repeated(recognizer, manifest):
    # 3.3 s: with the English vocabulary prompt and no 30 s padding, the decoder used to say it twice.
    clip = next(c for c in manifest if c.path.name == "en_librispeech_1089-134686-0001.wav")
    t = recognizer.transcribe(decode_file(clip.path))
    assert t is not None and t.text.lower().count("counsel") == 1, t.text
    assert error_rate(clip.reference, t.text, "en") <= 0.25


class _ScriptedEngine:
    """An engine whose decodes are scripted: what the recognizer does with them is under test, not Whisper."""

    name = "scripted"
    short_window = True

    def __init__(self, decodes):
        self.decodes = list(decodes)
        self.encoded: list[int] = []  # samples given to each encode
        self.prompts: list[str | None] = []

    def encode(self, audio, *, window_s=None):
        self.encoded.append(len(audio))
        return len(audio)

    def language_probs(self, encoded):
        return {"en": 0.99, "zh": 0.01}

    def decode(self, encoded, *, language, prompt, max_tokens, beam_size, content_s=None):
        self.prompts.append(prompt)
        return self.decodes.pop(0)


def _speech(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)


def test_a_decode_that_stops_on_an_empty_segment_is_continued_from_there(voice_settings):
    # Beam search may end on "... ask what you can<9.36><9.36>": by Whisper's convention the rest of the audio is
    # for the next window. The plain call decodes it from 9.36 s; so must the recognizer, or the tail is lost.
    from voice.asr import Decoded, Recognizer

    engine = _ScriptedEngine([
        Decoded("ask what you can", -0.3, 0.05, True, resume_s=9.36),
        Decoded("do for your country.", -0.3, 0.05, True),
    ])
    rec = Recognizer(engine=engine, settings=voice_settings.model_copy(update={"use_vocabulary_prompt": False}))
    t = rec.transcribe(_speech(11.0), language="en", gate=False)
    assert t.text == "ask what you can do for your country."
    assert engine.encoded == [11 * SAMPLE_RATE, int(round((11.0 - 9.36) * SAMPLE_RATE))]
    assert engine.prompts == [None, "ask what you can"]  # conditioned on what was heard, as Whisper does


def test_a_continuation_that_hears_nothing_adds_nothing_and_the_margin_is_not_decoded(voice_settings):
    from voice.asr import Decoded, Recognizer

    settings = voice_settings.model_copy(update={"use_vocabulary_prompt": False})
    engine = _ScriptedEngine([Decoded("one two three", -0.3, 0.05, True, resume_s=2.0),
                              Decoded("", -1.5, 0.9, True)])
    t = Recognizer(engine=engine, settings=settings).transcribe(_speech(4.0), language="en", gate=False)
    assert t.text == "one two three" and len(engine.encoded) == 2
    # Stopping within the last LATE_SEGMENT_S leaves only the silent margin: nothing more to decode.
    engine = _ScriptedEngine([Decoded("one two three", -0.3, 0.05, True, resume_s=3.9)])
    t = Recognizer(engine=engine, settings=settings).transcribe(_speech(4.0), language="en", gate=False)
    assert t.text == "one two three" and len(engine.encoded) == 1


def test_continued_chinese_is_joined_without_a_space():
    from voice.asr import _join_text

    assert _join_text("欢迎大家来体验", "达摩院推出的模型") == "欢迎大家来体验达摩院推出的模型"
    assert _join_text("ask what you can", "do for your country.") == "ask what you can do for your country."
    assert _join_text("", "do") == "do" and _join_text("我们", "") == "我们"


def test_the_end_of_a_long_sentence_is_not_lost(recognizer, manifest):
    # JFK, 11 s: with the vocabulary prompt beam search preferred to stop after "ask what you can" (an empty
    # segment opened at 9.36 s); the rest is now decoded from there, as the plain call does.
    clip = next(c for c in manifest if c.path.name == "en_jfk.flac")
    t = recognizer.transcribe(decode_file(clip.path))
    assert t is not None and t.text.rstrip(" .").lower().endswith("do for your country"), t.text
    assert error_rate(clip.reference, t.text, "en") <= 0.05, t.text


@pytest.mark.parametrize("channel", ["wideband", "telephone"])
def test_english_final_at_least_as_accurate_as_the_plain_engine_call(recognizer, manifest, channel):
    # Issue: speed must not be bought with accuracy. The plain call is faster-whisper's own transcribe() on the
    # same weights (beam 5, language detected, 30 s window, no prompt); development clips only.
    from voice.audio import through_telephone
    from voice.bench_window import plain_call

    ours, plain = [0, 0], [0, 0]
    for clip in manifest:
        if clip.language != "en":
            continue
        audio = decode_file(clip.path)
        audio = through_telephone(audio) if channel == "telephone" else audio
        t = recognizer.transcribe(audio)
        for acc, text in ((ours, t.text if t else ""), (plain, plain_call(recognizer.engine._model, audio)[0])):
            e, n = error_counts(clip.reference, text, "en")
            acc[0], acc[1] = acc[0] + e, acc[1] + n
    assert ours[0] <= plain[0], f"final {ours[0]}/{ours[1]} errors, plain call {plain[0]}/{plain[1]}"
