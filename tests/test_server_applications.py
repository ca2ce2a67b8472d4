"""Work-permit applications on the main store (server/store/applications.py), SQLite and PostgreSQL, and the import
command that writes there."""
from __future__ import annotations

import asyncio

import pytest

from routing.progress import Application, ApplicationNumber, SecondFactor
from routing.router import Router
from cluster_helpers import migrated_store
from routing_helpers import FIXTURES, fixture_settings
from server.store import Store
from server.store.applications import (
    StoreApplications,
    count_applications,
    find_application,
    seed_demo_applications,
    upsert_applications,
)

WP = ApplicationNumber("WP", "2026110001")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request, tmp_path):
    s = await migrated_store(request, tmp_path, request.param)
    if request.param == "postgres":
        from server.store.models import ApplicationRow
        from sqlalchemy import delete

        async with s.sessions.begin() as tx:  # the PostgreSQL database is shared by the module's tests
            await tx.execute(delete(ApplicationRow))
    yield s
    await s.close()


async def test_import_find_update_and_second_factor(store):
    assert await seed_demo_applications(store, FIXTURES / "applications.yaml") == 2
    assert await seed_demo_applications(store, FIXTURES / "applications.yaml") == 0, "a filled store is not re-seeded"
    found = await find_application(store, WP)
    assert found is not None and found.status("zh") and found.date_of_birth == "1990-03-15"
    assert found.verified_by(SecondFactor(passport_last4="4821"))
    assert await find_application(store, ApplicationNumber("", "2026110001")) == found  # digits alone, unique
    assert await find_application(store, ApplicationNumber("WP", "9999999999")) is None
    assert await find_application(store, ApplicationNumber("", "1' OR '1'='1")) is None
    await upsert_applications(store, [Application("WP2026110001", "Collected.", "已领取。", "2026-11-25",
                                                  passport_last4="4821")])
    again = await find_application(store, WP)
    assert await count_applications(store) == 2 and again.status_en == "Collected." and again.date_of_birth is None


async def test_the_router_looks_up_in_the_store_from_its_worker_thread(store, tmp_path):
    await upsert_applications(store, [Application("WP2026110001", "Stored status.", "库里的状态。", "2026-11-25",
                                                  date_of_birth="1990-03-15")])
    lookup = StoreApplications(store=store, loop=asyncio.get_running_loop())
    with pytest.raises(RuntimeError, match="worker thread"):
        lookup.find(WP)  # on the event loop it would wait for itself
    router = Router.load(fixture_settings(tmp_path, use_embeddings=False), applications=lookup)

    def dialog() -> list:
        state = router.new_dialog()
        return [router.decide("WP2026110001", language="en", state=state),
                router.decide("15 March 1990", language="en", state=state)]

    ask, answer = await asyncio.to_thread(dialog)
    assert ask.reason == "application_factor_needed"
    assert answer.reason == "application_lookup" and "Stored status." in answer.answer
    router.close()


async def test_a_store_that_fails_puts_the_caller_through(tmp_path):
    s = Store(url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    await s.migrate()
    await s.close()
    broken = Store(url=f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    broken.engine.sync_engine.dispose()
    lookup = StoreApplications(store=broken, loop=asyncio.get_running_loop())
    router = Router.load(fixture_settings(tmp_path, use_embeddings=False), applications=lookup)

    def dialog():
        state = router.new_dialog()
        router.decide("WP2026110001", language="en", state=state)
        return router.decide("1990-03-15", language="en", state=state)

    d = await asyncio.to_thread(dialog)
    # Never "your application does not exist" because the database failed: a person instead.
    assert (d.route, d.reason) == ("agent", "internal_error")
    await broken.close()


def test_import_command_writes_to_the_main_store(tmp_path, capsys):
    from server.cli import main

    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert main(["applications", "import", str(FIXTURES / "applications.yaml"), "--db", db]) == 0
    assert "imported 2 applications" in capsys.readouterr().out

    async def read():
        s = Store(url=db)
        try:
            return await find_application(s, WP)
        finally:
            await s.close()

    assert asyncio.run(read()).passport_last4 == "4821"
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications: [{number: nope}]", encoding="utf-8")
    assert main(["applications", "import", str(bad), "--db", db]) == 1
    assert "error:" in capsys.readouterr().err
    no_factor = tmp_path / "nofactor.yaml"
    no_factor.write_text("applications: [{number: WP1234567, status_en: a, status_zh: b, updated: '2026-01-01'}]",
                         encoding="utf-8")
    assert main(["applications", "import", str(no_factor), "--db", db]) == 1
    assert "second factor" in capsys.readouterr().err


def test_import_command_into_postgres(pg_url, capsys):
    from server.cli import main

    assert main(["applications", "import", str(FIXTURES / "applications.yaml"), "--db", pg_url]) == 0
    assert "imported 2 applications" in capsys.readouterr().out
