"""HTTP hardening of the whole app: security headers on every response, validation errors that never echo what was
submitted, and who may read /metrics.

- Headers: the pages load their scripts from this service only (CSP `script-src 'self'`; inline `style=` attributes
  are allowed, inline scripts are not), may not be framed (clickjacking), send no referrer, and are not sniffed as
  another content type. API answers are `Cache-Control: no-store` (transcripts must not sit in a browser cache).
  HSTS is sent when the request came over HTTPS (directly or as told by a proxy's X-Forwarded-Proto).
- 422 answers keep `loc`, `msg` and `type` of each error but drop `input` (FastAPI echoes the submitted value, and
  for a sign-in that is the password).
- /metrics: a scraper sends `Authorization: Bearer <metrics_token>` (setting), or a signed-in supervisor or admin.
"""
from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "media-src 'self' blob:; connect-src 'self' ws: wss:; worker-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'; object-src 'none'")
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CSP.encode()),
    (b"permissions-policy", b"microphone=(self), camera=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware (plain, not BaseHTTPMiddleware: it must not buffer streamed answers such as recordings)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers_in = dict(scope.get("headers") or [])
        https = scope.get("scheme") == "https" or headers_in.get(b"x-forwarded-proto", b"") == b"https"
        api = scope.get("path", "").startswith("/api/")

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in present]
                if api and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class ErrorOut(BaseModel):
    detail: str


# Documented on every /api route, so the OpenAPI schema says what a refusal looks like (schemathesis checks it).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "not signed in, or the session ended"},
    403: {"model": ErrorOut, "description": "the role may not do this"},
    404: {"model": ErrorOut, "description": "no such thing (or not yours)"},
    429: {"model": ErrorOut, "description": "too many failed sign-ins: see Retry-After"},
}


def unprocessable(field: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own (the schema's HTTPValidationError), for checks made after validation."""
    return HTTPException(status_code=422, detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}])


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def install_security(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]


async def metrics_access(request: Request) -> None:
    """A dependency of /metrics: the scraper's token, or a supervisor's or admin's session."""
    settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token is not None else ""
    if expected and token and hmac.compare_digest(token.encode(), expected.encode()):
        return
    from server.people.auth import current_principal

    principal = await current_principal(request)  # 401 without a session
    if principal.role not in ("supervisor", "admin"):
        raise HTTPException(status_code=403, detail=f"your role ({principal.role}) may not do this")


metrics_access.permission = "calls.review"  # type: ignore[attr-defined]  # read by the access-matrix test
