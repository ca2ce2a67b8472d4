"""Wire formats at the edge: each serializer turns one protocol's frames into server.call.messages and back.

The call session never sees JSON, base64 or μ-law; it speaks `Inbound` / `Outbound` messages only.
"""
from __future__ import annotations

from typing import Protocol

from server.call.messages import Inbound, Outbound


class Serializer(Protocol):
    protocol: str  # "native" | "twilio"

    def parse_text(self, text: str) -> list[Inbound]: ...

    def parse_binary(self, data: bytes) -> list[Inbound]: ...

    def serialize(self, message: Outbound) -> list[str | bytes]: ...
