"""The knowledge base at run time: keeps the router on the published knowledge base without a restart.

- At start-up (`attach`, before the service says ready) a fresh store is seeded from routing/knowledge/*.yaml, and
  the router switches to the store's published base when it differs from the files.
- A publish (here, in another process, or by `hotline knowledge import`) bumps the version in the database; every
  process polls it every `poll_s` seconds and reloads: the new index is built in a worker thread (reusing the
  embeddings of unchanged texts) and installed in one assignment, so calls in progress never wait for it.
- The answers that changed are synthesized into the speech cache in a background thread, paused while calls are
  connected (as the start-up cache filling is).
- With `redis_url` set (processes sharing Redis), a publish is also announced on the Redis channel
  `hotline:knowledge`, and every process reloads on the announcement at once; the poll stays as the path that always
  works (Redis down, a publish by `hotline knowledge import`).
- Entries past their review-by day are counted in /metrics (hotline_knowledge_review_overdue).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from typing import Any, Callable

from prometheus_client import Gauge

from routing.knowledge import KnowledgeBase, KnowledgeEntry, entry_document, load_knowledge
from server.knowledge.store import KnowledgeStore
from server.tasks import cancel_and_wait

log = logging.getLogger("hotline.knowledge")
CHANNEL = "hotline:knowledge"


def changed_entries(old: KnowledgeBase | None, new: KnowledgeBase) -> list[KnowledgeEntry]:
    """Entries of `new` whose answers differ from (or are missing in) `old`: what needs new speech."""
    before = {e.id: e.answer for e in old.entries} if old is not None else {}
    return [e for e in new.entries if before.get(e.id) != e.answer]


def same_content(a: KnowledgeBase, b: KnowledgeBase) -> bool:
    return [(e.topic, entry_document(e)) for e in a.entries] == [(e.topic, entry_document(e)) for e in b.entries]


class KnowledgeService:
    def __init__(self, *, app: Any, settings: Any, metrics: Any = None, today: Callable[[], dt.date] | None = None) -> None:
        self.app = app
        self.settings = settings
        self.poll_s = float(getattr(settings, "knowledge_poll_s", 3.0))
        self.today = today or (lambda: dt.datetime.now(dt.timezone.utc).date())
        self.components: Any = None
        self.version = 0
        self.kb: KnowledgeBase | None = None  # the published base the router serves
        self._lock = asyncio.Lock()  # one reload at a time in this process
        self._poller: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None
        self._store: KnowledgeStore | None = None
        self.redis_url: str | None = getattr(settings, "redis_url", None)
        self.channel = CHANNEL
        registry = getattr(metrics, "registry", None)
        self.overdue_gauge = Gauge("hotline_knowledge_review_overdue", "Published entries past their review-by day",
                                   registry=registry) if registry is not None else None
        self.version_gauge = Gauge("hotline_knowledge_version", "Version of the published knowledge base served",
                                   registry=registry) if registry is not None else None

    @property
    def store(self) -> KnowledgeStore:
        if self._store is None:
            self._store = KnowledgeStore(self.app.state.store)
        return self._store

    @property
    def router(self) -> Any:
        return self.components.router if self.components is not None else None

    def can_index(self) -> bool:
        """A real router (the fast tests' scripted router has no index to rebuild)."""
        return hasattr(self.router, "build_index")

    def seed_knowledge(self) -> KnowledgeBase:
        router = self.router
        if router is not None and getattr(router, "kb", None) is not None:
            return router.kb
        return load_knowledge(self.settings.routing.knowledge_dir)

    # ------------------------------------------------------------------ life cycle

    async def attach(self, components: Any) -> None:
        """Called once the models are loaded, before the service says ready."""
        self.components = components
        if await self.store.is_empty():
            seed = await asyncio.to_thread(self.seed_knowledge)
            if await self.store.seed(seed):
                log.info("knowledge base seeded from the YAML files", extra={"entries": len(seed.entries)})
        await self.reload(force=True)
        self._poller = asyncio.create_task(self._poll(), name="knowledge-poll")
        if self.redis_url:
            self._listener = asyncio.create_task(self._listen(), name="knowledge-redis")

    async def stop(self) -> None:
        tasks = [t for t in (self._poller, self._listener) if t is not None]
        await cancel_and_wait(*tasks)

    async def announce(self) -> None:
        """Tell the other processes (through Redis, when configured) that a new version is published."""
        if not self.redis_url:
            return
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.redis_url)
        try:
            await client.publish(self.channel, str(self.version))
        except Exception:  # the poll delivers it a few seconds later
            log.warning("could not announce the knowledge version on Redis")
        finally:
            await client.aclose()

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        while True:
            client = aioredis.from_url(self.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: the poll keeps working; try again later
                log.warning("knowledge announcements from Redis interrupted; polling meanwhile")
                await asyncio.sleep(self.poll_s)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                if await self.store.version() != self.version:
                    await self.reload()
                self._update_gauges()  # an entry falls due by the calendar alone
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad moment of the database: the router keeps the base it has
                log.exception("knowledge reload failed")

    async def reload(self, *, force: bool = False) -> bool:
        """Serve the store's published base (if its version moved). True when the router changed."""
        async with self._lock:
            version = await self.store.version()
            if version == self.version and not force:
                return False
            kb = await self.store.knowledge()
            router = self.router
            current = getattr(router, "kb", None)
            swapped = False
            if self.can_index() and (current is None or not same_content(current, kb)):
                index = await asyncio.to_thread(router.build_index, kb)
                router.install(index)
                swapped = True
                self.resynthesize(changed_entries(current, kb))
            previous_version, self.version, self.kb = self.version, version, kb
            self._update_gauges()
            if swapped or previous_version != version:
                log.info("knowledge base served", extra={"version": version, "entries": len(kb.entries),
                                                         "index_rebuilt": swapped})
            return swapped

    def _update_gauges(self) -> None:
        if self.overdue_gauge is not None and self.kb is not None:
            self.overdue_gauge.set(sum(1 for e in self.kb.entries if e.overdue(self.today())))
        if self.version_gauge is not None:
            self.version_gauge.set(self.version)

    # ------------------------------------------------------------------ speech cache

    def resynthesize(self, entries: list[KnowledgeEntry]) -> threading.Thread | None:
        """Synthesize the changed answers into the speech cache, in a daemon thread (wiring.cache_answers)."""
        cache = getattr(self.components, "cache_answers", None)
        if not entries or cache is None:
            return None
        thread = threading.Thread(target=self._cache, args=(cache, entries), name="knowledge-speech", daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _cache(cache: Callable[[list[KnowledgeEntry]], None], entries: list[KnowledgeEntry]) -> None:
        try:
            cache(entries)
        except Exception:  # a cache miss later is slower, not wrong
            log.exception("re-synthesizing changed answers failed")

    # ------------------------------------------------------------------ preview

    async def preview_router(self, kb: KnowledgeBase) -> Any:
        """A router deciding on `kb` (published base plus drafts), without touching the one serving calls."""
        router = self.router
        if router is None:
            raise RuntimeError("the models are still loading")
        if not self.can_index():
            return router
        if self.kb is not None and same_content(router.kb, kb):
            return router
        index = await asyncio.to_thread(router.build_index, kb)
        return router.with_index(index)


def install_knowledge(app: Any, settings: Any) -> KnowledgeService:
    """The knowledge editor's routes and its run-time service (server/app.py calls this once)."""
    from server.knowledge.api import router as api_router

    service = KnowledgeService(app=app, settings=settings, metrics=getattr(app.state, "metrics", None))
    app.state.knowledge = service
    app.include_router(api_router)
    return service
