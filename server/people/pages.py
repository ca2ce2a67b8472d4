"""The console pages: `GET /agent`, `GET /supervisor` and their assets under /people/. The pages themselves hold no
data (every figure comes from /api or the websockets, which check the token), so they are served to anyone."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
ASSETS = {
    "agent.js": "text/javascript; charset=utf-8",
    "supervisor.js": "text/javascript; charset=utf-8",
    "console-common.js": "text/javascript; charset=utf-8",
    "consoles.css": "text/css; charset=utf-8",
}
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/agent")
async def agent_page() -> FileResponse:
    return FileResponse(WEB_DIR / "agent.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)


@router.get("/supervisor")
async def supervisor_page() -> FileResponse:
    return FileResponse(WEB_DIR / "supervisor.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)


@router.get("/people/{name}")
async def console_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail="no such console asset")
    return FileResponse(WEB_DIR / "static" / name, media_type=media_type, headers=NO_CACHE)
