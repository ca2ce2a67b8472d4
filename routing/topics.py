"""Topic ids of the hotline: the machine-readable part of every answer (`hotline ask --json`, call events, stored
turns, analytics). The ids are stable: tests, dashboards and evaluations use them."""
from __future__ import annotations

TOPICS: tuple[str, ...] = (
    "work_permit_apply",
    "work_permit_categories",
    "work_permit_progress",
    "work_permit_extend",
    "work_permit_change",
    "work_permit_cancel",
    "work_permit_replace",
    "residence_permit",
    "single_window",
    "talent_accreditation",
    "salary_fx",
    "talent_visa",
    "dependents",
    "permanent_residence",
    "income_tax",
    "social_insurance",
    "lecture_series",
    "salon",
    "ebook",
    "hotline_info",
    "human_agent",
    "out_of_scope",
)

HUMAN_AGENT = "human_agent"  # the caller asks for a person: always routed to `agent`
OUT_OF_SCOPE = "out_of_scope"  # anything else: the answer says what the hotline covers and offers a person
HOTLINE_INFO = "hotline_info"
WORK_PERMIT_PROGRESS = "work_permit_progress"

# Topics about the hotline's own services: anything else is out of scope.
IN_SCOPE_TOPICS: frozenset[str] = frozenset(t for t in TOPICS if t not in (HUMAN_AGENT, OUT_OF_SCOPE))

LANGUAGES: tuple[str, ...] = ("en", "zh")
ROUTES: tuple[str, ...] = ("answer", "clarify", "agent")
