"""Settings of the whole service: one validated object, built once at start-up and passed in.

Composed of the layers' own settings (`voice`, `routing`) plus the server's fields. Sources, strongest first:
keyword arguments, environment variables `HOTLINE_*` (nested with `__`, e.g. `HOTLINE_VOICE__ENGINE=openai-whisper`),
an optional YAML or TOML file (`hotline --config FILE`), then the defaults below. Unknown keys are refused, so a
typo in a file or variable fails at start-up instead of being silently ignored.
"""
from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

from routing.queue import AcdSettings
from routing.settings import RoutingSettings
from voice.settings import VoiceSettings

# The file named by Settings.load(); a context variable rather than a class attribute so that tests (and two apps in
# one process) never see each other's file.
_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("hotline_config_file", default=None)


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def default_db_url() -> str:
    return f"sqlite+aiosqlite:///{project_root() / 'var' / 'hotline.db'}"


class SettingsError(ValueError):
    """A bad setting or option, said in one line: what is wrong and what to do. The CLI prints it and exits 2."""


# The URL forms every SQLAlchemy user types, and the async drivers the service runs on.
_DB_SCHEMES = {"sqlite": "sqlite+aiosqlite", "sqlite+aiosqlite": "sqlite+aiosqlite",
               "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
               "postgresql+asyncpg": "postgresql+asyncpg"}
DB_URL_HELP = "use sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE"


def async_db_url(url: str) -> str:
    """`sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`, `postgresql://…` -> `postgresql+asyncpg://…`; others refused.

    The message never repeats the URL: it may hold a password.
    """
    scheme, sep, rest = url.strip().partition("://")
    driver = _DB_SCHEMES.get(scheme.lower()) if sep else None
    if driver is None:
        known = "" if not sep else f" (the scheme {scheme!r} is not supported)"
        raise SettingsError(f"bad database URL{known}: {DB_URL_HELP}")
    if not rest.strip("/"):
        raise SettingsError(f"bad database URL: it names no database; {DB_URL_HELP}")
    return f"{driver}://{rest}"


def _one_line(exc: ValidationError) -> str:
    """pydantic's multi-line report -> one line naming each bad setting as a file key and an environment variable."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = [str(x) for x in err["loc"] if not isinstance(x, int)]
        key = ".".join(loc) or "settings"
        env = "HOTLINE_" + "__".join(loc).upper() if loc else "HOTLINE_*"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting: remove it or fix its spelling (README, Configuration)"
        parts.append(f"{key} ({env}): {msg}")
    return "bad setting: " + "; ".join(parts) + " (change it in the --config file or the environment)"


class PeopleSettings(BaseModel):
    """Settings of the people side (agents, supervisors, accounts). Part of server Settings as `people`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acd: AcdSettings = Field(default_factory=AcdSettings)
    token_ttl_s: float = Field(default=12 * 3600, gt=0, le=30 * 24 * 3600)
    dev_mode: bool = False  # allows accounts made with `hotline users add --dev` to sign in; never in production
    recordings: bool = True  # keep each call's audio (a WAV per call)
    # Where: "folder" (<recordings_dir>/<call_id>.wav), "database" (table recordings: every process can play every
    # call), "auto": the database when several processes share Redis (redis_url), else the folder.
    recordings_storage: Literal["auto", "folder", "database"] = "auto"
    # None: beside the SQLite database (var/recordings with the default database), else var/recordings under the
    # project root. Relative paths are taken from the project root. With several processes: a shared mount.
    recordings_dir: str | None = None
    agent_transcription: bool = True  # run the agent's microphone through a StreamingTranscriber too
    reply_lead_s: float = Field(default=0.3, ge=0)  # typed replies: audio sent this far ahead of real time
    # An agent console whose connection drops keeps its place (state, offer, call: the caller waits on the line)
    # this long: the console reconnects by itself (a process restart, a load balancer, a network blip).
    console_grace_s: float = Field(default=15.0, ge=0, le=300)
    # --- hardening of the consoles ---
    # Recordings: one call's file stops growing at this size (16 kHz PCM16 is 1.9 MB a minute: 64 MB is over half an
    # hour); files older than the retention are deleted at start-up and every hour (None: kept for ever).
    recording_max_mb: float = Field(default=64.0, gt=0)
    recordings_retention_days: float | None = Field(default=90.0, gt=0)
    ws_ticket_ttl_s: float = Field(default=30.0, gt=0, le=300)  # one-time websocket sign-in tickets
    session_check_s: float = Field(default=5.0, gt=0)  # console websockets re-check their session this often
    # Extra origins allowed to open the console websockets (the service's own host is always allowed).
    allowed_origins: tuple[str, ...] = ()
    # Sign-in guessing: failures counted per account and per client address over a sliding window; past the limit
    # the answer is 429 with Retry-After until the window has room again.
    login_window_s: float = Field(default=900.0, gt=0)
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=20, ge=1)
    reply_max_chars: int = Field(default=1000, ge=10, le=16 * 1024)  # an agent's typed reply


class ClusterSettings(BaseModel):
    """Several processes as one hotline (server/cluster): presence in Redis, used only when `redis_url` is set.
    Part of server Settings as `cluster`; its keys are under `<redis_prefix>:cluster:`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A process refreshes its heartbeat every interval (from a thread of its own); it is dead for the others when
    # the key expires (ttl). The sweep runs every sweep_interval_s, so a dead process's calls are closed within
    # ttl + two sweeps (a missing heartbeat is confirmed once) + one database write: 5 + 2 + (under a second) < 10 s.
    heartbeat_interval_s: float = Field(default=1.0, gt=0, le=30)
    heartbeat_ttl_s: float = Field(default=5.0, gt=0, le=120)
    sweep_interval_s: float = Field(default=1.0, gt=0, le=30)
    # How often the database and Redis are probed for /readyz and the refusal of new calls.
    health_interval_s: float = Field(default=1.0, gt=0, le=30)
    probe_timeout_s: float = Field(default=2.0, gt=0, le=10)

    @model_validator(mode="after")
    def _ttl_covers_missed_beats(self) -> "ClusterSettings":
        if self.heartbeat_ttl_s < 2 * self.heartbeat_interval_s:
            raise ValueError("cluster.heartbeat_ttl_s must be at least twice heartbeat_interval_s")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_", env_nested_delimiter="__", extra="forbid", frozen=True, validate_default=True
    )

    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    people: PeopleSettings = Field(default_factory=PeopleSettings)  # agent queue, consoles, accounts
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)  # presence of processes (with redis_url)

    # --- HTTP ---
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)  # 0 = any free port (tests)
    public_url: str | None = None  # e.g. https://hotline.example.org, when behind a proxy (Twilio signatures)

    # --- storage ---
    db_url: str = Field(default_factory=default_db_url)  # sqlite+aiosqlite:///path | postgresql+asyncpg://...
    db_echo: bool = False
    # Several processes, one hotline: with a Redis URL (redis://HOST:6379/0) every process shares the agent queue
    # (server/people/queue_redis.py, docs/queue.md); None keeps everything in this process.
    redis_url: str | None = None
    redis_prefix: str = Field(default="hotline", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")

    # --- shared worker pools (all calls share them; blocking inference never runs on the event loop) ---
    recognition_workers: int = Field(default=2, ge=1, le=64)
    recognition_queue_max: int = Field(default=32, ge=1)  # jobs waiting beyond this: partials dropped, finals refused
    synthesis_workers: int = Field(default=1, ge=1, le=64)
    synthesis_queue_max: int = Field(default=32, ge=1)
    routing_workers: int = Field(default=2, ge=1, le=64)
    routing_queue_max: int = Field(default=32, ge=1)

    # --- one call ---
    languages: tuple[Literal["en", "zh"], ...] = ("en", "zh")
    start_timeout_s: float = Field(default=1.0, gt=0)  # wait this long for call.start before greeting anyway
    playback_lead_s: float = Field(default=0.5, ge=0)  # audio sent ahead of real-time playback (0 = strictly paced)
    pace_audio: bool = True  # False: send answer audio as fast as it is made (tests, benchmarks with --fast)
    no_input_s: float = Field(default=8.0, gt=0)  # silence after the bot stops speaking that counts as no input
    no_input_reprompts: int = Field(default=1, ge=0)  # re-prompts before the polite goodbye
    max_call_s: float = Field(default=1800.0, gt=0)
    greeting: bool = True
    warm_answers: bool = True  # synthesize every knowledge-base answer into the (disk) cache in the background
    knowledge_poll_s: float = Field(default=3.0, gt=0, le=3600)  # how often a process checks for a published change
    # Niceness of the answer-warming process (voice/tts/warming.py): 19, the lowest priority; it is also frozen
    # while calls are connected. Lower only for tests on a machine loaded by other work.
    warm_niceness: int = Field(default=19, ge=0, le=19)
    # An answer whose first audio is not ready this long after the caller stopped speaking (an uncached answer on
    # a busy machine) is preceded by the cached "one_moment" prompt. The call events report the time to it
    # (ack_ms) apart from the time to the answer's own first audio (response_ms). None: never.
    acknowledge_after_s: float | None = Field(default=1.0, gt=0)
    # Preemptive synthesis: while the caller is still speaking (or in the silence after), each partial transcript
    # is routed on a copy of the dialog state; when two partials in a row (or the speculative final) get the same
    # uncached knowledge-base answer, its first chunk is synthesized at once. If the final transcript is answered
    # with the same first chunk the caller hears it as soon as the answer is decided; otherwise the work is
    # dropped. It starts only while the synthesis and recognition pools are idle (CallSession._preempt).
    preemptive_synthesis: bool = True

    # --- websockets and back-pressure ---
    send_queue_max: int = Field(default=256, ge=4)  # outbound messages per call; ~5 s of 20 ms frames
    send_timeout_s: float = Field(default=5.0, gt=0)  # one blocked send longer than this = slow consumer
    max_frame_bytes: int = Field(default=64 * 1024, ge=640)  # bigger frames get an error event
    ws_max_message_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)  # absurd sizes: closed with 1009
    inbound_queue_max: int = Field(default=1500, ge=50)  # 30 s of 20 ms frames waiting for the recognizer
    # Caller audio is paced to real time: a caller may get this many seconds of audio ahead of the clock (network
    # jitter, a burst after a stall); beyond it the call closes with 1008. None: no check, for tests and benchmarks
    # that replay recordings faster than real time.
    inbound_burst_s: float | None = Field(default=5.0, gt=0)
    max_calls: int = Field(default=32, ge=1)  # simultaneous calls; more are told so and closed with 1013
    max_calls_per_address: int = Field(default=4, ge=1)  # simultaneous calls from one client address
    # DTMF, marks and protocol errors: a burst, then this many a second; the excess is dropped and counted.
    control_events_per_s: float = Field(default=5.0, gt=0)
    control_events_burst: int = Field(default=20, ge=1)
    recorder_queue_max: int = Field(default=2000, ge=50)  # per call: past it, the oldest call events are dropped

    # --- telephony ---
    twilio_auth_token: SecretStr | None = None  # when set, X-Twilio-Signature is required on /ws/twilio
    # Without a token /ws/twilio refuses every stream, unless this says so (a development machine, a test).
    twilio_allow_unsigned: bool = False

    # --- HTTP exposure ---
    public_docs: bool = False  # /docs, /redoc and /openapi.json: off unless asked for
    metrics_token: SecretStr | None = None  # /metrics for a scraper (Bearer); supervisors and admins always may

    # --- logs ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    log_caller_data: bool = False  # caller data (transcripts, numbers) in logs only when explicitly allowed

    @field_validator("db_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        try:
            return async_db_url(value)
        except SettingsError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("redis_url")
    @classmethod
    def _known_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _languages_distinct(self) -> "Settings":
        if not self.languages or len(set(self.languages)) != len(self.languages):
            raise ValueError("languages must be a non-empty list of distinct served languages")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get()
        if path is not None:
            if path.suffix.lower() == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "Settings":
        """Build and validate the settings; `path` is an optional YAML/TOML file under the environment."""
        file = Path(path) if path else None
        if file is not None and not file.is_file():
            raise SettingsError(f"settings file not found: {file}; give --config an existing YAML or TOML file")
        token = _CONFIG_FILE.set(file)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None
        except SourceError as exc:  # an environment variable that is not valid JSON for a nested setting
            raise SettingsError(f"bad setting: {exc}; fix that HOTLINE_* variable") from None
        except Exception as exc:  # the file itself: not YAML/TOML, not a mapping, not UTF-8
            if file is None:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SettingsError(f"settings file {file} cannot be read ({first}); it must be a YAML or TOML "
                                "mapping of settings (README, Configuration)") from None
        finally:
            _CONFIG_FILE.reset(token)

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")
