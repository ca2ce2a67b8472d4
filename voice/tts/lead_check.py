"""`python -m voice.tts.lead_check [N] [SEED] [last-resort]`: a development check of the lead chunk (voice/tts/lead.py).

The opening two sentences of knowledge-base answers that the lead cuts (N per language, shuffled by SEED), spoken
by Kokoro whole and through LeadChunker, each transcribed back by the synthesized-speech judge
(voice/tts/scoring.py): the judged error rate of both, and the time to the first chunk and the lead's length.
With `last-resort`, only the answers cut at a clause mark past MAX_CLAUSE_LEAD (rule 5 of voice/tts/lead.py).
The knowledge base's answers are development text (the lead's rules were written looking at them); the bench
sentences of `hotline bench tts` and tests/test_voice_tts_kokoro.py are the targets' measure.
"""
from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

import yaml


def main(n: int = 20, seed: int = 1, last_resort: bool = False) -> None:
    from voice.asr import build_recognizer
    from voice.audio import pcm16_to_float
    from voice.settings import VoiceSettings
    from voice.tts import pcm16_of
    from voice.tts.kokoro import KokoroSynthesizer
    from voice.tts.lead import MAX_CLAUSE_LEAD, LeadChunker, _size, lead_cut
    from voice.tts.scoring import errors, judge_settings
    from voice.tts.textnorm import split_sentences

    settings = VoiceSettings()
    kokoro = KokoroSynthesizer(settings=settings)
    kokoro.warm_up()
    lead = LeadChunker(kokoro)
    judge = build_recognizer(judge_settings(settings), engine="faster-whisper")
    judge.warm_up()
    items: list[tuple[str, str]] = []
    root = Path(__file__).resolve().parents[2] / "routing" / "knowledge"
    for path in sorted(root.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "entries" not in data:
            continue
        for entry in data["entries"]:
            for language in ("en", "zh"):
                text = (" " if language == "en" else "").join(split_sentences(entry["answer"][language])[:2])
                cut = lead_cut(text, language)
                if cut and (not last_resort or _size(cut[0], language) > MAX_CLAUSE_LEAD[language]):
                    items.append((language, text))
    random.Random(seed).shuffle(items)
    for language in ("en", "zh"):
        chosen = [t for lang, t in items if lang == language][:n]
        counts = {"whole": [0, 0], "lead": [0, 0]}
        first: dict[str, list[float]] = {"whole": [], "lead": []}
        lead_audio: list[float] = []
        for text in chosen:
            for name, voice in (("whole", kokoro), ("lead", lead)):
                t0 = time.perf_counter()
                chunks = voice.synthesize(text, language)
                chunk = next(chunks)
                first[name].append(time.perf_counter() - t0)
                if name == "lead":
                    lead_audio.append(len(chunk.pcm16) / 2 / chunk.sample_rate)
                heard = judge.transcribe(pcm16_to_float(pcm16_of([chunk, *chunks])), language=language,
                                         vocabulary=False)
                e, m = errors(text, heard.text if heard else "", language)
                counts[name][0] += e
                counts[name][1] += m
        rate = {k: v[0] / max(1, v[1]) for k, v in counts.items()}
        print(f"{language}: {len(chosen)} answers; judged {'WER' if language == 'en' else 'CER'} whole "
              f"{rate['whole']:.1%}, with the lead {rate['lead']:.1%}; first chunk after median "
              f"{statistics.median(first['whole']):.2f} s whole, {statistics.median(first['lead']):.2f} s with the "
              f"lead (max {max(first['lead']):.2f} s); lead median {statistics.median(lead_audio):.2f} s of speech",
              flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]), last_resort="last-resort" in sys.argv[3:])
