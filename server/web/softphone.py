"""The browser softphone: `GET /` and its three assets."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from server.web import CSS, JS, add_assets, page

router = APIRouter(include_in_schema=False)


@router.get("/")
async def softphone_page() -> FileResponse:
    return page("softphone.html")


add_assets(router, "/softphone", {"softphone.js": JS, "capture-worklet.js": JS, "softphone.css": CSS}, what="softphone")
