"""The agent queue (ACD) in one package: pure decisions, their state and types, and the store seam.

    decisions.py  Acd and AcdSettings: every rule of the queue, pure code that takes `now`
    state.py      AcdState: everything the Acd knows, as plain dataclasses (what a store loads and saves)
    types.py      the values: agent states, outcomes, errors, the actions the Acd returns, console views
    codec.py      AcdState and actions <-> JSON-ready dicts (for a store shared by several processes)
    store.py      QueueStore: load -> decide -> save as one atomic step; InProcessQueueStore (the default)

The shared implementation (Redis) lives in server/people/queue_redis.py: routing/ does no I/O. The run-time that
carries the actions out (consoles, prompts, audio) is server/people/queue_runtime.py.
"""
from .decisions import EPS, Acd, AcdSettings
from .state import ALLOWED_TRANSITIONS, AcdState, AgentRecord, CallRecord, build_snapshot, queue_order
from .store import Decision, InProcessQueueStore, Party, QueueBusy, QueueStore, StoreView
from .types import (
    LANGUAGES,
    AcdClosed,
    AcdError,
    AcdSnapshot,
    Action,
    ActiveCallView,
    AgentSetAway,
    AgentState,
    AgentStateChanged,
    AgentView,
    Announce,
    CallbackTask,
    CallbackTaskCompleted,
    CallbackTaskCreated,
    CallConnected,
    CallFinal,
    CallOutcome,
    CallRequeued,
    CallStateError,
    ClockError,
    IllegalTransition,
    Language,
    Offer,
    OfferCallback,
    OfferExpired,
    OfferWithdrawn,
    QueuedCallView,
    UnknownAgent,
    UnknownCall,
    WithdrawReason,
)

__all__ = [
    "Acd", "AcdClosed", "AcdError", "AcdSettings", "AcdSnapshot", "AcdState", "Action", "ActiveCallView",
    "AgentRecord", "AgentSetAway", "AgentState", "AgentStateChanged", "AgentView", "ALLOWED_TRANSITIONS", "Announce",
    "build_snapshot", "CallbackTask", "CallbackTaskCompleted", "CallbackTaskCreated", "CallConnected", "CallFinal",
    "CallOutcome", "CallRecord", "CallRequeued", "CallStateError", "ClockError", "Decision", "EPS",
    "IllegalTransition", "InProcessQueueStore", "Language", "LANGUAGES", "Offer", "OfferCallback", "OfferExpired",
    "OfferWithdrawn", "Party", "queue_order", "QueueBusy", "QueuedCallView", "QueueStore", "StoreView",
    "UnknownAgent", "UnknownCall", "WithdrawReason",
]
