"""A process's identity in the cluster: unique across machines and restarts (a restarted process is a new one)."""
from __future__ import annotations

import os
import secrets
import socket


def new_process_id() -> str:
    host = socket.gethostname().split(".")[0][:24] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
