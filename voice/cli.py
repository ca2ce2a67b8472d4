"""Voice sub-commands: `hotline transcribe`, `hotline models`, `hotline bench asr`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from voice.settings import VoiceSettings


def add_commands(sub, bench_sub) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files (WAV, FLAC, MP3, AIFF, any rate and channels)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--engine", choices=["faster-whisper", "openai-whisper"], help="recognition engine")
    p.add_argument("--language", choices=["en", "zh"], help="force the language (default: detect)")
    p.add_argument("--no-vocabulary", action="store_true", help="do not prompt with the hotline vocabulary")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("models", help="which model weights, where, which engine, whether they are ready")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = bench_sub.add_parser("asr", help="WER/CER with 95%% CI, language accuracy and real-time factor per engine, "
                                         "wideband and telephone, beside the plain engine call")
    p.add_argument("--engine", default="all", choices=["all", "faster-whisper", "openai-whisper"],
                   help="engine(s) behind the project's recognizer (the plain-call baseline is always faster-whisper)")
    p.add_argument("--vocabulary", default="settings", choices=["settings", "on", "off", "both"],
                   help="the hotline vocabulary prompt as configured (default: English only), on for every "
                        "language, off, or off and on side by side")
    p.add_argument("--beam", type=int, default=None, help="beam size (default from settings)")
    p.add_argument("--domain", action="store_true",
                   help="hotline sentences spoken by the neural voice instead of the recordings (vocabulary effect)")
    p.add_argument("--part", default="both", choices=["both", "test", "dev"],
                   help="which part of the recordings: test (held out; the figures), dev (tuning may look), both")
    p.add_argument("--no-baseline", action="store_true", help="skip the plain faster-whisper call")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="print every clip's transcript")
    p.set_defaults(func=cmd_bench_asr)

    p = bench_sub.add_parser("window", help="the recognizer's final vs the plain engine call, 30 s vs utterance "
                                           "encoder window: WER/CER and encoder/decoder time on real recordings")
    p.add_argument("--folder", type=Path, default=None, help="recordings folder with a manifest.tsv "
                   "(default: recordings_fixtures/)")
    p.add_argument("--max-seconds", type=float, default=None, help="only clips up to this long")
    p.add_argument("--part", default="dev", choices=["dev", "test", "both"],
                   help="which part of the recordings (default dev: the window settings were chosen on it; a "
                        "--folder manifest without a split column counts as test)")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="print every clip's transcript")
    p.set_defaults(func=cmd_bench_window)

    p = bench_sub.add_parser("vad", help="Silero vs webrtcvad, wideband and 8 kHz telephone audio")
    p.add_argument("--part", default="test", choices=["test", "dev"], help="which part of the recordings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args: __import__("voice.bench_vad", fromlist=["run"]).run(as_json=args.json,
                                                                                          part=args.part))


def settings_from_args(args) -> VoiceSettings:
    # The dispatcher (server/cli.py) reads settings once (env + optional file) and hands a loader down, so this
    # layer never imports server/.
    loader = getattr(args, "load_settings", None)
    return loader().voice if loader else VoiceSettings()


def cmd_transcribe(args) -> int:
    from voice.asr import build_recognizer
    from voice.audio import AudioFormatError, decode_file
    from voice.streaming import transcribe_file

    settings = settings_from_args(args)
    if args.no_vocabulary:
        settings = settings.model_copy(update={"use_vocabulary_prompt": False})
    status = 0
    audio_error = "(give an audio file: WAV, FLAC, MP3, AIFF, OGG, or raw .pcm / .ul)"
    files = []
    for path in args.files:  # missing files are said before the model loads, not after
        if Path(path).is_file():
            files.append(path)
        else:
            print(f"error: {path}: no such file {audio_error}", file=sys.stderr)
            status = 2
    if not files:
        return status
    rec = build_recognizer(settings, engine=args.engine)
    for path in files:
        try:
            audio = decode_file(path)
        except AudioFormatError as exc:  # bad input: said in one line, the other files still transcribed
            print(f"error: {exc} {audio_error}", file=sys.stderr)
            status = 2
            continue
        transcripts = transcribe_file(rec, audio, settings=settings, language=args.language)
        if args.json:
            print(json.dumps({"file": path, "duration_s": round(len(audio) / 16000, 3),
                              "utterances": [_as_dict(t) for t in transcripts]}, ensure_ascii=False))
            continue
        print(f"== {path} ({len(audio) / 16000:.2f} s)")
        if not transcripts:
            print("   (no speech)")
        for t in transcripts:
            lv = t.language
            print(f"   [{t.start_s:6.2f}-{t.end_s:6.2f}] {lv.label}{'(' + lv.code + ')' if lv.label == 'other' else ''}"
                  f" p={lv.probability:.2f} via {lv.source}{' mixed' if lv.mixed else ''}"
                  f" | {t.engine} {t.recognition_s * 1000:.0f} ms | {t.text}")
    return status


def _as_dict(t) -> dict:
    return {"text": t.text, "language": t.language.label, "language_code": t.language.code,
            "language_probability": round(t.language.probability, 4), "language_source": t.language.source,
            "mixed": t.language.mixed, "start_s": round(t.start_s, 3), "end_s": round(t.end_s, 3),
            "engine": t.engine, "model": t.model, "recognition_s": round(t.recognition_s, 4),
            "no_speech_prob": round(t.no_speech_prob, 4), "avg_logprob": round(t.avg_logprob, 4)}


def cmd_models(args) -> int:
    from voice.models import whisper_status

    settings = settings_from_args(args)
    statuses = whisper_status(settings.cache_dir)
    try:
        from voice.tts import model_status as tts_status

        statuses += tts_status(settings)
    except ImportError:
        pass
    from voice.vad import silero_model_path

    try:
        statuses.append(type(statuses[0])("silero-vad v6 (faster-whisper asset)", silero_model_path(), True, "bundled"))
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        statuses.append(type(statuses[0])("silero-vad", None, False, str(exc)))
    if args.json:
        print(json.dumps([{"name": s.name, "path": str(s.path) if s.path else None, "ready": s.ready,
                           "detail": s.detail} for s in statuses], indent=2))
    else:
        print(f"engine: {settings.engine} (device {settings.device}), voice: {settings.voice}, cache: {settings.cache_dir}")
        for s in statuses:
            print(f"  [{'ready' if s.ready else 'MISSING'}] {s.name}: {s.path or ''}  {s.detail if not s.ready else ''}")
    return 0 if all(s.ready for s in statuses) else 1


def cmd_bench_asr(args) -> int:
    from voice.bench import run

    settings = settings_from_args(args)
    if args.beam:
        settings = settings.model_copy(update={"beam_size": args.beam})
    engines = ["faster-whisper", "openai-whisper"] if args.engine == "all" else [args.engine]
    parts = ("test", "dev") if args.part == "both" else (args.part,)
    return run(engines, vocabulary=args.vocabulary, settings=settings, as_json=args.json, verbose=args.verbose,
               domain=args.domain, parts=parts, baseline=not args.no_baseline)



def cmd_bench_window(args) -> int:
    from voice.bench import FIXTURES
    from voice.bench_window import run

    return run(folder=args.folder or FIXTURES, settings=settings_from_args(args), as_json=args.json,
               verbose=args.verbose, limit_s=args.max_seconds, part=args.part)
