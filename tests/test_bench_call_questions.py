"""`hotline bench call`'s questions heard the way a call hears them (the per-call StreamingTranscriber on the real
Whisper model) and routed by the shipped router: regressions for the wrong turns that bench found.

- The hotline's own Mandarin voice saying "居留许可在哪里办理？" was recognized as "举楼许可…" and answered as a work
  permit question (routing/retrieval_text.py folds -iu onto -ou now).
- Mandarin-accented English (speechocean762) was heard as Portuguese in the middle of an English call and sent to
  the agent queue as a language not served (voice.language.heard_in_call_language).
"""
from __future__ import annotations

import pytest

from routing.router import Router
from routing_helpers import real_settings
from server.caller.bench import RECORDINGS, SYNTHESIZED
from server.caller.client import load_utterance, utterance_from_audio
from voice.audio import frames, pcm16_to_float
from voice.streaming import FinalRequest, PartialRequest, StreamingTranscriber

from conftest import FIXTURES

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    r = Router.load(real_settings(tmp_path_factory.mktemp("bench-call")))
    yield r
    r.close()


def new_call(recognizer, voice_settings) -> StreamingTranscriber:
    from voice.vad import SileroVad

    return StreamingTranscriber(recognizer=recognizer, vad=SileroVad(), settings=voice_settings)


def say(st: StreamingTranscriber, pcm16: bytes) -> list:
    """One turn as the bench's caller plays it (line silence, the speech, silence), recognized as the session does:
    the speculative recognition first, then the final that reuses it."""
    silence = b"\x00" * 16000  # 0.5 s
    finals = []
    for frame in frames(silence + pcm16 + silence * 4):
        for e in st.accept(frame):
            if isinstance(e, PartialRequest) and e.speculative_end_s is not None:
                st.partial(e)
            elif isinstance(e, FinalRequest):
                t = st.final(e)
                if t is not None and t.text.strip():
                    finals.append(t)
    return finals


def test_the_hotline_voice_asking_about_the_residence_permit_is_answered_about_it(recognizer, voice_settings,
                                                                                    router):
    from voice.tts import build_synthesizer

    text, expect = next((t, e) for t, e in SYNTHESIZED if t == "居留许可在哪里办理？")
    # As the bench makes it: the call path's synthesizer (its speech cache holds the same audio the bench plays).
    pcm = b"".join(c.pcm16 for c in build_synthesizer(voice_settings).synthesize(text, "zh"))
    question = utterance_from_audio("q", pcm16_to_float(pcm))
    st = new_call(recognizer, voice_settings)
    heard = say(st, question.pcm16)
    assert len(heard) == 1
    d = router.decide(heard[0].text, language=heard[0].language.label, state=router.new_dialog())
    assert expect.met_by({"route": d.route, "topic": d.topic, "language": d.language}), (heard[0].text, d)


def test_accented_english_in_an_english_call_is_heard_as_english_not_another_language(recognizer, voice_settings,
                                                                                       router):
    st = new_call(recognizer, voice_settings)
    state = router.new_dialog()
    first = say(st, load_utterance(FIXTURES / "en_librispeech_1089-134686-0001.wav").pcm16)
    assert [t.language.label for t in first] == ["en"]
    router.decide(first[0].text, language="en", state=state)
    name = "en_speechocean762_011090334.wav"
    heard = say(st, load_utterance(FIXTURES / name).pcm16)
    assert len(heard) == 1
    t = heard[0]
    assert t.language.label == "en" and "still" in t.text.lower(), t  # "How can they still believe in ..."
    d = router.decide(t.text, language=t.language.label, state=state)
    assert d.route != "agent" and RECORDINGS[name].met_by({"route": d.route, "topic": d.topic,
                                                          "language": d.language}), (t.text, d)
