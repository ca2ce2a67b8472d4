"""Messages of the agent queue (ACD): states, errors, actions and console views.

Everything here is a value: enums, exceptions and frozen dataclasses. The decision code lives in routing/queue/decisions.py;
the mutable records it keeps live in routing/queue/state.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal, Union

Language = Literal["en", "zh"]
LANGUAGES: frozenset[str] = frozenset({"en", "zh"})


class AgentState(str, Enum):
    """Where an agent is. The legal moves between states are in routing/queue/state.py (ALLOWED_TRANSITIONS)."""

    OFFLINE = "offline"  # not signed in (or console gone)
    AVAILABLE = "available"  # signed in and ready: may receive an offer
    OFFERED = "offered"  # a call is ringing on the console, waiting for accept / decline
    ON_CALL = "on_call"  # talking to a caller
    WRAP_UP = "wrap_up"  # after a call: disposition and note, no new offers
    AWAY = "away"  # signed in but not taking calls (chose it, or missed offers)


class CallOutcome(str, Enum):
    """The final state of a queued call. Each call gets exactly one, once, and it never changes.

    ANSWERED                 an agent accepted the call; set when the conversation ends (agent ends it or the caller
                             hangs up), because an agent whose console drops mid-call puts the call back in the queue.
    ABANDONED                the caller hung up while waiting (wait_s = time spent waiting).
    CALLBACK_REQUESTED       the caller asked to be called back; a CallbackTask is stored for the agents.
    TRANSFERRED_BACK_TO_BOT  the agent handed the caller back to the bot.
    CLOSED                   the queue shut down (Acd.close) before the call reached another final state.
    """

    ANSWERED = "answered"
    ABANDONED = "abandoned"
    CALLBACK_REQUESTED = "callback_requested"
    TRANSFERRED_BACK_TO_BOT = "transferred_back_to_bot"
    CLOSED = "closed"


# Why an offer stopped ringing.
WithdrawReason = Literal[
    "timeout",  # not accepted within offer_timeout_s (counts as a miss)
    "declined",  # the agent said no
    "agent_disconnected",  # the agent's console went away
    "agent_away",  # the agent chose away while the offer rang
    "agent_logout",  # the agent signed out while the offer rang
    "call_ended",  # the caller hung up or took a call-back
    "closed",  # the queue shut down
]


# --- errors: every one is a ValueError with a message that says what to do -----------------------------------------


class AcdError(ValueError):
    """Base of every error the queue raises. The queue's state is unchanged when one is raised."""


class UnknownAgent(AcdError):
    pass


class UnknownCall(AcdError):
    pass


class IllegalTransition(AcdError):
    def __init__(self, *, agent_id: str, state: AgentState, event: str, hint: str = "") -> None:
        self.agent_id = agent_id
        self.state = state
        self.event = event
        message = f"agent {agent_id!r}: {event} is not allowed in state {state.value!r}"
        super().__init__(f"{message} ({hint})" if hint else message)


class CallStateError(AcdError):
    """The operation does not fit the call's current state (e.g. accept a call not offered to this agent)."""


class OfferExpired(CallStateError):
    """accept() at or after the offer's deadline: the offer is (or is about to be) withdrawn."""


class AcdClosed(AcdError):
    pass


class ClockError(AcdError):
    """`now` went backwards or is not a finite number."""


# --- actions: what the queue decided; the server carries them out --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """Ring `agent_id`'s console with `call_id` until `expires_at`."""

    agent_id: str
    call_id: str
    language: Language
    at: float
    expires_at: float
    wait_s: float  # how long the caller has waited in the queue so far
    language_match: bool  # False only under the any_agent_after_s rule


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferWithdrawn:
    agent_id: str
    call_id: str
    reason: WithdrawReason
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallConnected:
    """The agent accepted: bridge the caller to the agent. Not final (the agent's console may still drop)."""

    call_id: str
    agent_id: str
    wait_s: float
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRequeued:
    """The agent's console dropped mid-call: the caller is back on hold, at the front of the queue."""

    call_id: str
    agent_id: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged:
    agent_id: str
    previous: AgentState
    state: AgentState
    reason: str  # e.g. "login", "offer", "accepted", "offer_timeout", "wrap_up_timeout", "disconnected"
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSetAway:
    """The queue set the agent away because they missed `missed_offers` offers in a row (tell their console)."""

    agent_id: str
    missed_offers: int
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Announce:
    """Tell the caller, in their language, their place in the queue and the estimated wait.

    estimated_wait_s is None when no agent who speaks the language is signed in (no honest estimate exists).
    """

    call_id: str
    language: Language
    position: int  # 1 = next; counted among waiting calls of the same language
    estimated_wait_s: float | None
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCallback:
    """The caller has waited max_wait_s: offer a call-back (confirmed by voice or keypad -> Acd.request_callback)."""

    call_id: str
    language: Language
    wait_s: float
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackTask:
    """A call-back the agents owe; the server joins it with the caller's number (never kept here)."""

    task_id: str
    call_id: str
    language: Language
    requested_at: float
    wait_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackTaskCreated:
    task: CallbackTask


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackTaskCompleted:
    task_id: str
    agent_id: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFinal:
    """The call's one final state. wait_s is the time the caller spent waiting in the queue (talk time excluded)."""

    call_id: str
    language: Language
    state: CallOutcome
    wait_s: float
    agent_id: str | None  # the agent who answered / handed back / was on it at close; None otherwise
    at: float


Action = Union[
    Offer,
    OfferWithdrawn,
    CallConnected,
    CallRequeued,
    AgentStateChanged,
    AgentSetAway,
    Announce,
    OfferCallback,
    CallbackTaskCreated,
    CallbackTaskCompleted,
    CallFinal,
]


# --- console views -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedCallView:
    call_id: str
    language: Language
    position: int  # 1-based, in distribution order across all languages
    wait_s: float
    enqueued_at: float
    requeued: bool  # its agent dropped: it goes ahead of the others
    offered_to: str | None
    callback_offered: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveCallView:
    call_id: str
    language: Language
    agent_id: str
    wait_s: float
    connected_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentView:
    agent_id: str
    languages: frozenset[str]
    state: AgentState
    state_since: float
    idle_since: float | None  # set while available (longest idle is offered first)
    call_id: str | None  # the call offered to / with the agent
    missed_offers: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AcdSnapshot:
    at: float
    queue: tuple[QueuedCallView, ...]
    active: tuple[ActiveCallView, ...]
    agents: tuple[AgentView, ...]
    callback_tasks: tuple[CallbackTask, ...]
    closed: bool
