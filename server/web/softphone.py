"""The browser softphone: `GET /` and its three assets, served from files beside this module.

A router (not a StaticFiles mount) because FastAPI's include_router carries routes but not mounts, and a whitelist
keeps the page's URLs explicit. No CDN: the page works on a machine with no internet.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent
ASSETS = {
    "softphone.js": "text/javascript; charset=utf-8",
    "capture-worklet.js": "text/javascript; charset=utf-8",
    "softphone.css": "text/css; charset=utf-8",
}
# The page is tiny and changes with the server: always revalidate, so a redeploy never leaves stale JS behind.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def softphone_page() -> FileResponse:
    return FileResponse(WEB_DIR / "softphone.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)


@router.get("/softphone/{name}")
async def softphone_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail="no such softphone asset")
    return FileResponse(WEB_DIR / "static" / name, media_type=media_type, headers=NO_CACHE)
