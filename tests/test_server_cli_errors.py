"""Bad input and bad settings end every command the same way: one line on stderr saying what is wrong and what to
do, exit code 2, no traceback. And the database URL takes the plain forms SQLAlchemy users type."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from server.settings import Settings, SettingsError, async_db_url


@pytest.mark.parametrize("plain,mapped", [
    ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ("sqlite:////var/lib/hotline.db", "sqlite+aiosqlite:////var/lib/hotline.db"),
    ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ("postgresql://postgres@127.0.0.1:5432/hotline", "postgresql+asyncpg://postgres@127.0.0.1:5432/hotline"),
    ("postgres://u:secret@db/hotline", "postgresql+asyncpg://u:secret@db/hotline"),
    ("postgresql+asyncpg://u@db/hotline", "postgresql+asyncpg://u@db/hotline"),
])
def test_plain_database_urls_map_to_the_async_drivers(plain, mapped):
    assert async_db_url(plain) == mapped
    assert Settings.load(db_url=plain).db_url == mapped


@pytest.mark.parametrize("url", ["mysql://u@h/db", "x.db", "sqlite://", "postgresql+psycopg2://u:secret@h/db"])
def test_other_database_urls_are_refused_without_repeating_them(url):
    with pytest.raises(SettingsError) as err:
        Settings.load(db_url=url)
    assert "secret" not in str(err.value) and "sqlite:///PATH" in str(err.value)


def hotline(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    environ.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, env=environ,
                          cwd=cwd or ROOT, timeout=120)


def _files(tmp_path):
    (tmp_path / "broken.yaml").write_text("port: [1\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "unknown.yaml").write_text("prot: 8000\n")
    (tmp_path / "broken.toml").write_text("port = \n")
    return tmp_path


CASES = {
    "bad --db scheme": (["serve", "--db", "mysql://u:secret@h/db"], {}, "bad database URL"),
    "bad --db form": (["users", "list", "--db", "hotline.db"], {}, "bad database URL"),
    "missing --config": (["--config", "{tmp}/missing.yaml", "models"], {}, "settings file not found"),
    "unparsable YAML": (["--config", "{tmp}/broken.yaml", "models"], {}, "cannot be read"),
    "YAML not a mapping": (["--config", "{tmp}/list.yaml", "models"], {}, "cannot be read"),
    "unparsable TOML": (["--config", "{tmp}/broken.toml", "models"], {}, "cannot be read"),
    "unknown key in file": (["--config", "{tmp}/unknown.yaml", "models"], {}, "prot (HOTLINE_PROT): unknown setting"),
    "bad env value": (["models"], {"HOTLINE_PORT": "eighty"}, "port (HOTLINE_PORT)"),
    "bad nested env": (["models"], {"HOTLINE_VOICE__THREADS": "0"}, "voice.threads (HOTLINE_VOICE__THREADS)"),
    "bad env JSON": (["models"], {"HOTLINE_VOICE": "{not json"}, "HOTLINE_* variable"),
    "bad env db URL": (["warm"], {"HOTLINE_DB_URL": "mysql://x/y"}, "db_url (HOTLINE_DB_URL)"),
    "missing audio file": (["transcribe", "{tmp}/missing.wav"], {}, "no such file"),
    "not audio": (["transcribe", "{tmp}/list.yaml"], {}, "give an audio file"),
    "bad output folder": (["say", "hello", "--voice", "espeak", "-o", "{tmp}/missing/x.wav"], {},
                          "not a file in an existing folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_ends_with_one_line_and_exit_2(case, tmp_path):
    args, env, expected = CASES[case]
    tmp = _files(tmp_path)
    done = hotline(*[a.replace("{tmp}", str(tmp)) for a in args], env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert expected in lines[0] and "secret" not in lines[0]


def test_a_plain_sqlite_url_opens_the_database(tmp_path):
    done = hotline("users", "list", "--db", f"sqlite:///{tmp_path / 'people.db'}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "people.db").is_file()
