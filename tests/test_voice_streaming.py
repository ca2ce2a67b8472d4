"""Endpointing on a virtual clock, LocalAgreement never retracting, and a real call-like stream."""
from __future__ import annotations

import random

import numpy as np
import pytest

from voice.audio import decode_file, float_to_pcm16, frames
from voice.language import CallLanguage, audio_verdict, combine, is_ambiguous
from voice.streaming import (
    Endpointer, FinalRequest, HypothesisBuffer, PartialDue, PartialRequest, StreamingTranscriber, UtteranceEnd,
    UtteranceStart,
)
from voice.types import LanguageVerdict, SpeechStarted

from conftest import FIXTURES

W = 0.032


def drive(ep: Endpointer, probs: list[float], t0: float = 0.0):
    events, now = [], t0
    for p in probs:
        now += W
        events += [(round(now, 3), e) for e in ep.update(p, now)]
    return events, now


def test_endpointer_start_end_and_trailing_silence_on_a_virtual_clock():
    ep = Endpointer(min_speech_s=0.25, end_silence_s=0.6, partial_interval_s=10, prefinal_silence_s=None)
    events, now = drive(ep, [0.0] * 10 + [0.9] * 40 + [0.05] * 30)
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["UtteranceStart", "UtteranceEnd"]
    start, end = events[0][1], events[1][1]
    assert start.at_s == pytest.approx(10 * W, abs=1e-9)  # the onset, not the moment it was confirmed
    assert end.end_s == pytest.approx(50 * W, abs=1e-9) and end.reason == "silence"
    assert events[1][0] == pytest.approx(50 * W + 0.6, abs=W)  # decided after exactly the configured silence


def test_short_bursts_are_not_speech_and_brief_pauses_do_not_end_an_utterance():
    ep = Endpointer(min_speech_s=0.25, end_silence_s=0.6, partial_interval_s=10, prefinal_silence_s=None)
    clicks = ([0.9] * 3 + [0.0] * 20) * 5  # 96 ms bursts: clicks, coughs
    events, now = drive(ep, clicks)
    assert events == []
    events, _ = drive(ep, [0.9] * 20 + [0.1] * 10 + [0.9] * 20 + [0.0] * 25, now)  # 320 ms pause inside speech
    assert [type(e) for _, e in events] == [UtteranceStart, UtteranceEnd]


def test_partials_are_due_at_the_interval_and_long_speech_is_cut_at_max_length():
    ep = Endpointer(min_speech_s=0.1, end_silence_s=0.5, partial_interval_s=0.8, max_utterance_s=5.0)
    events, _ = drive(ep, [0.9] * int(12 / W))
    gaps, last = [], None
    for t, e in events:
        if isinstance(e, PartialDue):
            if last is not None:
                gaps.append(t - last)
            last = t
        elif isinstance(e, UtteranceEnd):
            last = None  # a cut starts a new utterance: its first partial comes one interval after the cut
    assert len(gaps) >= 8 and all(0.8 - 1e-6 <= g <= 0.8 + W + 1e-6 for g in gaps), gaps
    cuts = [e for _, e in events if isinstance(e, UtteranceEnd)]
    assert len(cuts) == 2 and all(c.reason == "max_length" and c.end_s - c.start_s <= 5.0 + W for c in cuts)
    assert ep.flush(12.0)[0].reason == "flush" and ep.flush(12.0) == []


def test_hysteresis_keeps_speech_through_a_dip_just_below_threshold():
    ep = Endpointer(min_speech_s=0.1, end_silence_s=0.3, partial_interval_s=10)
    events, _ = drive(ep, [0.9] * 10 + [0.4] * 20 + [0.0] * 12)
    ends = [e for _, e in events if isinstance(e, UtteranceEnd)]
    assert len(ends) == 1 and ends[0].end_s == pytest.approx(30 * W, abs=1e-9)


def test_local_agreement_commits_common_prefix_and_never_retracts():
    rng = random.Random(3)
    words = "how do I apply for a work permit in Shanghai please".split()
    for _ in range(200):
        buf = HypothesisBuffer()
        committed_history: list[str] = []
        for _ in range(8):
            n = rng.randint(0, len(words))
            hyp = words[:n]
            if hyp and rng.random() < 0.4:
                hyp = hyp[:-1] + [rng.choice(["permeate", "permits", "perm"])]
            stable, unstable = buf.insert(" ".join(hyp))
            if committed_history:
                assert stable.startswith(committed_history[-1])  # never retracts
            committed_history.append(stable)
    buf = HypothesisBuffer()
    assert buf.insert("how do I") == ("", "how do I")
    assert buf.insert("how do I apply") == ("how do I", "apply")
    assert buf.insert("how do you apply") == ("how do I", "")  # disagreement cannot rewrite committed words
    buf2 = HypothesisBuffer()
    buf2.insert("我想申请工作")
    assert buf2.insert("我想申请工作许可") == ("我想申请工作", "许可")  # Chinese agrees per character


def test_call_language_does_not_flip_on_one_short_ambiguous_utterance():
    call = CallLanguage(switch_min_s=1.5)
    zh = LanguageVerdict(label="zh", code="zh", probability=0.97, source="audio+text")
    en_short = LanguageVerdict(label="en", code="en", probability=0.8, source="audio")
    assert call.observe(zh, duration_s=3.0, text="我想问一下工作许可").label == "zh"
    assert call.observe(en_short, duration_s=0.6, text="OK").label == "zh"
    assert call.observe(en_short, duration_s=2.5, text="OK").label == "zh"  # ambiguous word, however long
    en_long = LanguageVerdict(label="en", code="en", probability=0.95, source="audio+text")
    assert call.observe(en_long, duration_s=3.0, text="Actually can we speak English please").label == "en"
    assert call.observe(zh, duration_s=0.5, text="好的").label == "en"
    assert is_ambiguous("好的。") and is_ambiguous("OK!") and not is_ambiguous("我想问工作许可")


def test_audio_verdict_reports_other_languages_and_restricts_uncertain_ones():
    assert audio_verdict({"ja": 0.9, "zh": 0.05, "en": 0.05}) == LanguageVerdict("other", "ja", 0.9, "audio")
    v = audio_verdict({"cy": 0.35, "en": 0.3, "zh": 0.05, "fr": 0.3})
    assert v.label == "en"  # a weak guess at another language falls back to the likelier served one
    assert combine(LanguageVerdict("zh", "zh", 0.9, "audio"), "うちの中学は").code == "ja"
    mixed = combine(LanguageVerdict("zh", "zh", 0.9, "audio"), "我的 work permit 快到期了")
    assert mixed.label == "zh" and mixed.mixed


def _stream(transcriber, audio, tail_s=1.0):
    pcm = float_to_pcm16(np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(int(tail_s * 16000), np.float32)]))
    events = []
    for i, frame in enumerate(frames(pcm)):
        events += transcriber.accept(frame, now=i * 0.02)
    return events + transcriber.flush()


@pytest.mark.model
def test_streaming_a_real_recording_gives_partials_that_never_retract_and_finals(recognizer, voice_settings):
    from voice.vad import SileroVad

    st = StreamingTranscriber(recognizer=recognizer, vad=SileroVad(), settings=voice_settings)
    events = _stream(st, decode_file(FIXTURES / "zh_funasr_csharp_example_1.wav"))
    assert isinstance(events[0], SpeechStarted)
    finals, stable_by_utt = [], {}
    for ev in events:
        if isinstance(ev, PartialRequest):
            p = st.partial(ev)
            if p is not None:
                prev = stable_by_utt.get(ev.utterance, "")
                assert p.stable.startswith(prev)
                stable_by_utt[ev.utterance] = p.stable
        elif isinstance(ev, FinalRequest):
            t = st.final(ev)
            assert t is not None and t.language.label == "zh"
            finals.append(t)
    assert len(finals) >= 2 and any(stable_by_utt.values())
    assert all(a.end_s <= b.start_s + 0.5 for a, b in zip(finals, finals[1:]))  # times increase
    text = "".join(t.text for t in finals)
    assert "正义" in text and "世界" in text
    assert st.call_language.current.label == "zh"


@pytest.mark.model
def test_streaming_silence_and_noise_give_no_events(recognizer, voice_settings):
    from voice.vad import SileroVad

    rng = np.random.default_rng(5)
    for audio in (np.zeros(5 * 16000, np.float32), (rng.standard_normal(5 * 16000) * 0.05).astype(np.float32)):
        st = StreamingTranscriber(recognizer=recognizer, vad=SileroVad(), settings=voice_settings)
        events = _stream(st, audio)
        finals = [st.final(e) for e in events if isinstance(e, FinalRequest)]
        assert [f for f in finals if f is not None and f.text.strip()] == []


def test_bad_frames(voice_settings):
    from voice.audio import AudioFormatError
    from voice.vad import SileroVad

    class NoRecognizer:  # accept() must never call the recognizer
        def transcribe(self, *a, **k):
            raise AssertionError("accept() ran Whisper")

    st = StreamingTranscriber(recognizer=NoRecognizer(), vad=SileroVad(), settings=voice_settings)
    assert st.accept(b"") == []
    with pytest.raises(AudioFormatError):
        st.accept(b"\x00" * 641)
    with pytest.raises(AudioFormatError):
        st.accept(b"\x00" * (128 * 1024))
    assert st.accept(b"\x00" * 640 * 50) == []  # 1 s of silence in one go is fine


def test_prefinal_is_due_once_per_silence_and_before_the_end():
    ep = Endpointer(min_speech_s=0.1, end_silence_s=0.6, prefinal_silence_s=0.25, partial_interval_s=10)
    events, _ = drive(ep, [0.9] * 20 + [0.0] * 10 + [0.9] * 10 + [0.0] * 25)
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["UtteranceStart", "PrefinalDue", "PrefinalDue", "UtteranceEnd"]
    from voice.streaming import PrefinalDue

    pre = [e for _, e in events if isinstance(e, PrefinalDue)]
    end = [e for _, e in events if isinstance(e, UtteranceEnd)][0]
    assert pre[-1].end_s == end.end_s  # the last speculation assumed exactly the end the final got
    assert pre[0].end_s < end.end_s  # the first was overtaken by more speech


def test_the_early_speculation_comes_before_the_later_one_once_per_silence():
    from voice.streaming import PrefinalDue

    ep = Endpointer(min_speech_s=0.1, end_silence_s=0.6, prefinal_silence_s=0.25, early_prefinal_silence_s=0.15,
                    partial_interval_s=10)
    # speech, a pause of 8 windows (0.256 s: both speculations due), speech again, then the end
    events, _ = drive(ep, [0.9] * 20 + [0.0] * 8 + [0.9] * 10 + [0.0] * 25)
    pre = [(t, e) for t, e in events if isinstance(e, PrefinalDue)]
    end = [e for _, e in events if isinstance(e, UtteranceEnd)][0]
    assert [e.early for _, e in pre] == [True, False, True, False]
    for (t_early, early), (t_late, late) in zip(pre[::2], pre[1::2]):
        assert early.end_s == late.end_s  # the same silence, so the same audio: the later one is not run again
        assert t_early - early.end_s == pytest.approx(0.15, abs=W) and t_late - late.end_s == pytest.approx(0.25, abs=W)
    assert pre[-1][1].end_s == end.end_s
    # Without the early setting, as before: one per silence.
    ep = Endpointer(min_speech_s=0.1, end_silence_s=0.6, prefinal_silence_s=0.25, partial_interval_s=10)
    events, _ = drive(ep, [0.9] * 20 + [0.0] * 25)
    assert [e.early for _, e in events if isinstance(e, PrefinalDue)] == [False]


def test_the_early_speculation_runs_only_while_the_recognizer_is_idle():
    from server.call.session import speculate_now

    assert speculate_now(early=True, others_pending=0, started=False)
    assert not speculate_now(early=True, others_pending=1, started=False)  # another call's recognition: skipped
    assert speculate_now(early=False, others_pending=3, started=False)  # the later one runs under load as before
    assert not speculate_now(early=False, others_pending=0, started=True)  # the early one already runs: reused


def test_speculation_settings_are_refused_when_their_audio_could_not_match_the_final():
    from pydantic import ValidationError

    from voice.settings import VoiceSettings

    VoiceSettings(speech_pad_s=0.15, early_prefinal_silence_s=0.15)
    with pytest.raises(ValidationError, match="early_prefinal_silence_s"):
        VoiceSettings(speech_pad_s=0.2, early_prefinal_silence_s=0.15)  # less trailing audio than the final's
    with pytest.raises(ValidationError, match="early_prefinal_silence_s"):
        VoiceSettings(speech_pad_s=0.15, early_prefinal_silence_s=0.3)  # after the later one
    with pytest.raises(ValidationError, match="early_prefinal_silence_s"):
        VoiceSettings(speech_pad_s=0.15, early_prefinal_silence_s=0.15, prefinal_silence_s=None)


@pytest.mark.model
def test_final_reuses_the_speculative_recognition_when_the_caller_stays_silent(recognizer, voice_settings):
    from voice.vad import SileroVad

    st = StreamingTranscriber(recognizer=recognizer, vad=SileroVad(), settings=voice_settings)
    events = _stream(st, decode_file(FIXTURES / "en_librispeech_1089-134686-0001.wav"))
    spec = [e for e in events if isinstance(e, PartialRequest) and e.speculative_end_s is not None]
    finals = [e for e in events if isinstance(e, FinalRequest)]
    assert spec and finals
    for e in spec:
        st.partial(e)
    fresh = recognizer.transcribe(finals[-1].audio, start_s=finals[-1].start_s, gate=False)
    t = st.final(finals[-1])
    assert st.reused_finals == 1
    assert t.text == fresh.text  # the same audio, so the same words as a fresh recognition


def test_sample_buffer_keeps_order_across_growth_and_front_drops():
    from voice.streaming import _SampleBuffer

    buf, reference = _SampleBuffer(capacity=1000), np.zeros(0, np.float32)
    rng = np.random.default_rng(7)
    for step in range(300):
        chunk = rng.standard_normal(512).astype(np.float32)
        buf.append(chunk)
        reference = np.concatenate([reference, chunk])
        if step % 7 == 0:
            drop = int(rng.integers(0, 3000))
            buf.drop_front(drop)
            reference = reference[drop:]
        assert len(buf) == len(reference)
    assert np.array_equal(buf.slice(0, len(buf)), reference)
    assert np.array_equal(buf.slice(100, 900), reference[100:900])
    assert len(buf.slice(len(buf) - 5, len(buf) + 50)) == 5 and len(buf.slice(10, 5)) == 0


@pytest.mark.parametrize("text,kind", [
    ("How do I renew my work permit?", "complete"),
    ("工作许可怎么办理？", "complete"),
    ("外国人可以办居留许可吗", "complete"),
    ("这个要多少钱", "complete"),
    ("I would like to ask about, um", "hesitant"),
    ("I need my residence permit and", "hesitant"),
    ("My work permit expires next month,", "hesitant"),
    ("我想问一下那个", "hesitant"),
    ("I have a question about the single window.", "open"),
    ("", "open"),
    # The start of a question, heard in a pause inside it, comes out as a short question of its own: not complete.
    ("How do?", "open"),
    ("在哪里？", "open"),
    ("What's the fee for it?", "complete"),
])
def test_ending_kind_reads_complete_questions_and_hesitations(text, kind):
    from voice.streaming import ending_kind

    assert ending_kind(text) == kind


def _adaptive() -> Endpointer:
    return Endpointer(min_speech_s=0.1, end_silence_s=0.6, prefinal_silence_s=0.25, partial_interval_s=10,
                      complete_silence_s=0.35, hesitation_silence_s=1.0)


def _end_time(events) -> float:
    return next(t for t, e in events if isinstance(e, UtteranceEnd))


def _speak_then_prefinal(ep: Endpointer):
    """20 windows of speech, then silence until the speculative recognition is due: (its voice end, now)."""
    from voice.streaming import PrefinalDue

    events, now = drive(ep, [0.9] * 20 + [0.0] * 9)
    return next(e for _, e in events if isinstance(e, PrefinalDue)).end_s, now


def test_end_silence_is_shorter_after_a_complete_question_on_a_virtual_clock():
    ep = _adaptive()
    voice_end, now = _speak_then_prefinal(ep)
    assert ep.heard("Can I apply for a work permit online?", voice_end) == 0.35
    rest, _ = drive(ep, [0.0] * 30, now)
    assert _end_time(rest) == pytest.approx(20 * W + 0.35, abs=W)


def test_end_silence_is_longer_after_a_hesitation_and_plain_otherwise():
    ep = _adaptive()
    voice_end, now = _speak_then_prefinal(ep)
    assert ep.heard("I want to ask about my, um", voice_end) == 1.0
    rest, _ = drive(ep, [0.0] * 40, now)
    assert _end_time(rest) == pytest.approx(20 * W + 1.0, abs=W)
    ep = _adaptive()
    voice_end, now = _speak_then_prefinal(ep)
    assert ep.heard("I have a question about the single window.", voice_end) == 0.6
    rest, _ = drive(ep, [0.0] * 40, now)
    assert _end_time(rest) == pytest.approx(20 * W + 0.6, abs=W)


def test_an_adapted_end_silence_lapses_when_the_caller_speaks_again():
    ep = _adaptive()
    voice_end, now = _speak_then_prefinal(ep)
    ep.heard("Where do I apply?", voice_end)  # complete, but the caller goes on speaking
    more, now = drive(ep, [0.9] * 10, now)
    assert not any(isinstance(e, UtteranceEnd) for _, e in more)
    rest, _ = drive(ep, [0.0] * 40, now)
    assert _end_time(rest) == pytest.approx(39 * W + 0.6, abs=W)  # the new silence gets the plain wait


class _ScriptedRecognizer:
    """Returns scripted verdicts for undirected decodes; a decode told its language is heard in that language."""

    def __init__(self, verdicts):
        self.verdicts = list(verdicts)
        self.forced: list[str] = []

    def transcribe(self, audio, *, language=None, start_s=0.0, gate=True, **_):
        from voice.types import Transcript

        if language is not None:
            self.forced.append(language)
            v, text = LanguageVerdict(language, language, 1.0, "hint"), f"decoded in {language}"
        else:
            v = self.verdicts.pop(0)
            text = f"heard as {v.code}"
        return Transcript(text=text, language=v, start_s=start_s, end_s=start_s + 2.0, engine="fake", model="fake",
                          recognition_s=0.1, encoder_s=0.05)


class _NoVad:
    window = 512


def _final(st, n):
    return st.final(FinalRequest(np.zeros(32000, np.float32), 10.0 * n, 10.0 * n + 2.0, "silence", n))


def test_an_unsure_other_language_in_an_english_call_is_decoded_in_english(voice_settings):
    from voice.language import heard_in_call_language

    en = LanguageVerdict("en", "en", 0.95, "audio+text")
    pt_unsure = LanguageVerdict("other", "pt", 0.7, "audio")  # accented English, as Whisper base hears it
    rec = _ScriptedRecognizer([en, pt_unsure])
    st = StreamingTranscriber(recognizer=rec, vad=_NoVad(), settings=voice_settings)
    assert _final(st, 1).language.label == "en"
    t = _final(st, 2)
    assert rec.forced == ["en"]
    assert (t.text, t.language.label, t.language.source) == ("decoded in en", "en", "call")
    assert t.recognition_s == pytest.approx(0.2)  # both decodes are the utterance's recognition time
    # The pure rule: sure verdicts, script or text evidence, a call not yet heard (or only hinted) are kept.
    limit = voice_settings.other_language_in_call_min_prob
    assert heard_in_call_language(pt_unsure, en, other_min_prob=limit)
    assert not heard_in_call_language(LanguageVerdict("other", "ru", 0.97, "audio"), en, other_min_prob=limit)
    assert not heard_in_call_language(LanguageVerdict("other", "ja", 0.9, "script"), en, other_min_prob=limit)
    assert not heard_in_call_language(LanguageVerdict("other", "fr", 0.96, "text"), en, other_min_prob=limit)
    assert not heard_in_call_language(pt_unsure, LanguageVerdict("unknown", "", 0.0, "none"), other_min_prob=limit)
    assert not heard_in_call_language(pt_unsure, LanguageVerdict("en", "en", 1.0, "hint"), other_min_prob=limit)


def test_another_language_stays_another_language_at_the_start_of_a_call_or_when_sure(voice_settings):
    pt_unsure = LanguageVerdict("other", "pt", 0.7, "audio")
    ru = LanguageVerdict("other", "ru", 0.97, "audio")
    zh = LanguageVerdict("zh", "zh", 0.99, "audio+text")
    rec = _ScriptedRecognizer([pt_unsure, zh, ru])
    st = StreamingTranscriber(recognizer=rec, vad=_NoVad(), settings=voice_settings)
    assert _final(st, 1).language.code == "pt"  # nothing heard before it: the caller may well not speak en or zh
    assert _final(st, 2).language.label == "zh"
    assert _final(st, 3).language.code == "ru"  # sure: the caller did switch language
    assert rec.forced == []
