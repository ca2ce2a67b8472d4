"""The console pages: `GET /agent`, `GET /supervisor` and their assets under /people/. The pages themselves hold no
data (every figure comes from /api or the websockets, which check the token), so they are served to anyone."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from server.web import CSS, JS, add_assets, page

router = APIRouter(include_in_schema=False)


@router.get("/agent")
async def agent_page() -> FileResponse:
    return page("agent.html")


@router.get("/supervisor")
async def supervisor_page() -> FileResponse:
    return page("supervisor.html")


add_assets(router, "/people", {"agent.js": JS, "supervisor.js": JS, "console-common.js": JS, "consoles.css": CSS,
                              "knowledge.js": JS},
           what="console")
