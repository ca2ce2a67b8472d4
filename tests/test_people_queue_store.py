"""Which queue store a process uses: chosen once from the settings and injected by create_app (no Redis needed)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from routing.queue import AcdSettings, InProcessQueueStore
from server.people.queue_redis import RedisQueueStore, RedisUnavailable
from server.people.queue_store import make_queue_store
from server.settings import Settings


def test_the_settings_choose_the_store(tmp_path):
    db = f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"
    assert isinstance(make_queue_store(Settings(db_url=db), process_id="p"), InProcessQueueStore)
    shared = make_queue_store(Settings(db_url=db, redis_url="redis://127.0.0.1:1/3", redis_prefix="hl"), process_id="p")
    assert isinstance(shared, RedisQueueStore) and shared.keys[0] == "hl:queue:state" and shared.process_id == "p"
    with pytest.raises(ValidationError):
        Settings(db_url=db, redis_url="http://127.0.0.1:6379")
    with pytest.raises(ValidationError):
        Settings(db_url=db, redis_prefix="two words")


def test_hotline_serve_takes_a_redis_url():
    from server.cli import build_parser

    assert build_parser().parse_args(["serve", "--redis", "redis://h:6379/0"]).redis == "redis://h:6379/0"


def test_an_unreachable_redis_is_named_in_the_error():
    store = RedisQueueStore(url="redis://user:secret@127.0.0.1:1/0", prefix="x", settings=AcdSettings(), process_id="p")
    with pytest.raises(RedisUnavailable) as err:
        store.check()
    assert "127.0.0.1:1/0" in str(err.value) and "secret" not in str(err.value)


async def test_create_app_hands_the_queue_runtime_to_the_calls(tmp_path):
    import asyncio

    from fakes import fake_components
    from server.app import create_app

    app = create_app(Settings(db_url=f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"), components=fake_components(),
                     configure_logs=False)
    runtime = app.state.people.queue
    assert isinstance(runtime.queue_store, InProcessQueueStore)
    assert runtime.process_id == app.state.process_id
    async with app.router.lifespan_context(app):
        for _ in range(500):
            if app.state.context is not None:
                break
            await asyncio.sleep(0.01)
        # The calls' queue is the runtime from the moment the context exists: nothing swaps it later.
        assert app.state.context.queue is runtime
        assert runtime._ticker is not None  # started with the app
    assert runtime._ticker is None  # stopped with it
