"""Pages served by the call service: the browser softphone at `/` (softphone.py) and the agent and supervisor
consoles (server/people/pages.py), all from files in this folder.

Routers, not StaticFiles mounts, because FastAPI's include_router carries routes but not mounts, and a whitelist
keeps each page's URLs explicit. No CDN: the pages work on a machine with no internet.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent
# The pages are small and change with the server: always revalidate, so a redeploy never leaves stale JS behind.
NO_CACHE = {"Cache-Control": "no-cache"}
HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"


def page(name: str) -> FileResponse:
    return FileResponse(WEB_DIR / name, media_type=HTML, headers=NO_CACHE)


def add_assets(router: APIRouter, prefix: str, assets: dict[str, str], *, what: str) -> None:
    """Serve `prefix/{name}` from static/ for the whitelisted names only; anything else is a 404."""

    async def asset(name: str) -> FileResponse:
        media_type = assets.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail=f"no such {what} asset")
        return FileResponse(WEB_DIR / "static" / name, media_type=media_type, headers=NO_CACHE)

    router.add_api_route(f"{prefix}/{{name}}", asset, methods=["GET"], name=f"{what}_asset")
