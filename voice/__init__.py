"""voice/: hears and speaks. Audio formats, VAD, Whisper, language identification, text-to-speech.

Knows audio and languages, nothing of calls, HTTP or routing.
"""
