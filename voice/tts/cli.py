"""Speaking sub-commands: `hotline say` and `hotline bench tts`."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from voice.cli import settings_from_args
from voice.settings import VoiceSettings

# A fixed bilingual set from the hotline's domain: greetings, permits, dates, phone and application numbers, times.
BENCH_SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Hello, you have reached the Foreign Talent hotline. How can I help you?",
        "To apply for a work permit, submit your application through the Single Window platform.",
        "Your residence permit should be renewed at least 30 days before it expires.",
        "A work permit is usually processed within 10 working days.",
        "Your application WP202611000123 was approved on 2026-11-20.",
        "For more help, please call the 12345 hotline or 962288.",
        "Our office hours are 9:00 to 17:00, Monday to Friday.",
        "Please bring your passport, two photos and your employment contract.",
        "High-level talent may receive a permit valid for up to 5 years.",
        "Please hold while I transfer you to an agent.",
    ),
    "zh": (
        "您好，这里是外国人才服务热线，请问有什么可以帮您？",
        "申请工作许可，请通过单一窗口平台提交材料。",
        "居留许可需要在到期前30天申请延期。",
        "工作许可一般在10个工作日内办理完毕。",
        "您的申请编号是WP202611000123，已于2026年11月20日批准。",
        "如需更多帮助，请拨打12345市民服务热线。",
        "办公时间为周一至周五9:00到17:00。",
        "请携带护照、两张照片和劳动合同。",
        "高层次人才的工作许可最长可以办理5年。",
        "请稍候，正在为您转接人工客服。",
    ),
}


def add_commands(sub, bench_sub) -> None:
    p = sub.add_parser("say", help="synthesize speech to a WAV file (English or Mandarin)")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--language", choices=["en", "zh"], help="default: from the script (Han characters -> zh)")
    p.add_argument("--voice", choices=["neural", "espeak"], help="default: from settings (neural = Kokoro)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.wav",
                   help="16 kHz PCM16 WAV; a name ending in .ul / .mulaw gets raw 8 kHz μ-law (telephone) bytes")
    p.set_defaults(func=cmd_say)

    p = bench_sub.add_parser("tts", help="synthesize a bilingual set with both voices, transcribe it back with "
                                         "Whisper base (language forced and detected): WER/CER and real-time factor per voice")
    p.add_argument("--voice", default="all", choices=["all", "neural", "espeak"])
    p.add_argument("--kokoro-style", action="append", metavar="A+B",
                   help="Kokoro style vector(s) to average, e.g. jm_kumo+jf_gongitsune; repeat to compare several")
    p.add_argument("--vocabulary", action="store_true",
                   help="let Whisper use the hotline vocabulary prompt (off: measure the voice, not the prompt)")
    p.add_argument("--judge", default="reference", choices=["reference", "deployed"],
                   help="reference: Whisper base in float32 with beam 5, the same on every CPU (default); "
                        "deployed: the recognizer as calls run it (int8, beam from settings)")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="print every sentence's transcript")
    p.set_defaults(func=cmd_bench_tts)


# ---------------------------------------------------------------- hotline say

def cmd_say(args) -> int:
    from voice.models import ModelMissingError
    from voice.tts import build_voice, pcm16_of, script_language, to_telephone
    from voice.tts.textnorm import has_speakable

    settings = settings_from_args(args)
    language = args.language or script_language(args.text)
    if not has_speakable(args.text):
        print("error: nothing to say (the text is empty, or only symbols / links)", file=sys.stderr)
        return 2
    out = Path(args.output)
    if not out.parent.is_dir() or out.is_dir():  # said before the synthesis, not after it as a traceback
        print(f"error: {out} is not a file in an existing folder: give -o a path such as answer.wav", file=sys.stderr)
        return 2
    try:
        synth = build_voice(settings, args.voice)
        t0 = time.perf_counter()
        first_s = None
        chunks = []
        for chunk in synth.synthesize(args.text, language):
            first_s = first_s if first_s is not None else time.perf_counter() - t0
            chunks.append(chunk)
        elapsed = time.perf_counter() - t0
    except ModelMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    try:
        if out.suffix.lower() in (".ul", ".mulaw", ".ulaw"):
            out.write_bytes(b"".join(to_telephone(c) for c in chunks))
        else:
            from voice.audio import write_wav

            write_wav(out, pcm16_of(chunks))
    except (OSError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
        print(f"error: cannot write {out} ({exc}); give -o a writable file", file=sys.stderr)
        return 2
    duration = sum(c.duration_s for c in chunks)
    print(f"{out}: {synth.name}, {language}, {len(chunks)} chunk(s), {duration:.2f} s of speech, "
          f"synthesized in {elapsed:.2f} s including model load (real-time factor {elapsed / max(duration, 1e-9):.3f}, "
          f"first chunk after {first_s or 0:.2f} s)")
    return 0


# ---------------------------------------------------------------- hotline bench tts

def _recognizer(settings: VoiceSettings):
    from voice.asr import build_recognizer

    rec = build_recognizer(settings)
    rec.warm_up()
    return rec


def _transcribe(rec, audio: np.ndarray, language: str | None, vocabulary: bool) -> tuple[str, str]:
    """(text, language code Whisper settled on); language None = detected, as a caller's speech is."""
    transcript = rec.transcribe(audio, language=language, vocabulary=vocabulary)
    if transcript is None:
        return "", ""
    return transcript.text, transcript.language.code or transcript.language.label


def _voices(args, settings: VoiceSettings):
    from voice.tts.espeak import EspeakSynthesizer
    from voice.tts.kokoro import DEFAULT_STYLE, KokoroSynthesizer

    out = []
    if args.voice in ("all", "neural"):
        styles = [tuple(s.split("+")) for s in (args.kokoro_style or [])] or [DEFAULT_STYLE]
        for style in styles:
            out.append(("kokoro " + "+".join(style), KokoroSynthesizer(settings=settings, style=style)))
    if args.voice in ("all", "espeak"):
        out.append(("espeak-ng", EspeakSynthesizer(settings=settings)))
    return out


def bench_tts(settings: VoiceSettings, voices, *, vocabulary: bool = False, verbose: bool = False,
              sentences: dict[str, tuple[str, ...]] = BENCH_SENTENCES, judge: VoiceSettings | None = None) -> list[dict]:
    """Synthesize every sentence with every voice, transcribe it back twice (language forced, language detected as
    a call would), score both against the sentence, and time the synthesis."""
    from voice.audio import pcm16_to_float
    from voice.tts.scoring import errors, judge_settings

    rec = _recognizer(judge or judge_settings(settings))
    rows = []
    for label, synth in voices:
        synth.warm_up()  # model load and first-call costs are not synthesis speed
        row = {"voice": label, "synthesis_s": 0.0, "audio_s": 0.0}
        for language, texts in sentences.items():
            counts = {"forced": [0, 0], "detected": [0, 0]}
            heard_as: dict[str, int] = {}
            for text in texts:
                t0 = time.perf_counter()
                chunks = list(synth.synthesize(text, language))
                row["synthesis_s"] += time.perf_counter() - t0
                audio = pcm16_to_float(b"".join(c.pcm16 for c in chunks))
                row["audio_s"] += len(audio) / 16_000
                for mode, hint in (("forced", language), ("detected", None)):
                    heard, code = _transcribe(rec, audio, hint, vocabulary)
                    e, n = errors(text, heard, language)
                    counts[mode][0] += e
                    counts[mode][1] += n
                    if mode == "detected":
                        heard_as[code or "nothing"] = heard_as.get(code or "nothing", 0) + 1
                    if verbose:
                        print(f"  [{label} {language} {mode}{'' if hint else ':' + code}] {e}/{n}  {text}  ->  {heard}",
                              file=sys.stderr)
            metric = "wer_en" if language == "en" else "cer_zh"
            row[metric] = counts["forced"][0] / max(counts["forced"][1], 1)
            row[metric + "_detected"] = counts["detected"][0] / max(counts["detected"][1], 1)
            row["heard_as_" + language] = dict(sorted(heard_as.items(), key=lambda kv: -kv[1]))
        row["rtf"] = row["synthesis_s"] / max(row["audio_s"], 1e-9)
        rows.append(row)
    return rows


def cmd_bench_tts(args) -> int:
    from voice.tts.scoring import judge_settings

    settings = settings_from_args(args)
    judge = judge_settings(settings) if args.judge == "reference" else settings
    rows = bench_tts(settings, _voices(args, settings), vocabulary=args.vocabulary, verbose=args.verbose, judge=judge)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    n_en, n_zh = len(BENCH_SENTENCES["en"]), len(BENCH_SENTENCES["zh"])
    print(f"TTS round trip: {n_en} English + {n_zh} Mandarin hotline sentences, transcribed back with Whisper base "
          f"({judge.engine} {judge.compute_type} beam {judge.beam_size}, {args.judge} judge, "
          f"vocabulary prompt {'on' if args.vocabulary else 'off'}); {settings.threads} thread(s)")
    print("scored after the judge's own normaliser (voice.evaluation), not the voice's reading rules; forced = "
          "language given to Whisper, detected = Whisper decides, as on a call")
    print(f"{'voice':<26}{'EN WER':>8}{'ZH CER':>8}{'EN WER':>9}{'ZH CER':>8}  {'EN heard as':<18}{'ZH heard as':<18}"
          f"{'audio s':>8}{'synth s':>8}{'RTF':>7}")
    print(f"{'':<26}{'forced':>16}{'detected':>17}")
    for r in rows:
        print(f"{r['voice']:<26}{r.get('wer_en', float('nan')):>8.1%}{r.get('cer_zh', float('nan')):>8.1%}"
              f"{r.get('wer_en_detected', float('nan')):>9.1%}{r.get('cer_zh_detected', float('nan')):>8.1%}  "
              f"{_heard_as(r.get('heard_as_en')):<18}{_heard_as(r.get('heard_as_zh')):<18}"
              f"{r['audio_s']:>8.1f}{r['synthesis_s']:>8.2f}{r['rtf']:>7.3f}")
    kokoro = [r for r in rows if r["voice"].startswith("kokoro")]
    espeak = [r for r in rows if r["voice"] == "espeak-ng"]
    if kokoro and espeak:
        ratio = kokoro[0]["rtf"] / max(espeak[0]["rtf"], 1e-9)
        print(f"speed: espeak-ng is {ratio:.0f}x faster than {kokoro[0]['voice']} (RTF ratio)")
    print("targets: neural voice EN WER <= 5%, ZH CER <= 15%; espeak-ng reported, not targeted")
    return 0


def _heard_as(counts: dict[str, int] | None) -> str:
    return " ".join(f"{code}:{n}" for code, n in counts.items()) if counts else "-"
