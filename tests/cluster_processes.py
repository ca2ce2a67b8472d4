"""Real `hotline serve` processes for the scale-out tests: started as subprocesses against the machine's PostgreSQL
and Redis (database 4, a key prefix of the test's own), killed with SIGKILL, and nginx in front of them with the
documented configuration (docs/nginx/hotline.conf)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cluster_helpers import REDIS_URL, free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "docs" / "nginx" / "hotline.conf"


class ServeProcess:
    def __init__(self, name: str, *, db_url: str, prefix: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = workdir / f"serve-{name}.log"
        self.db_url = db_url
        environ = {**os.environ, "PYTHONPATH": str(ROOT), "HOTLINE_REDIS_PREFIX": prefix, "HOTLINE_WARM_ANSWERS": "false", "HOTLINE_LOG_LEVEL": "WARNING",
                   "HOTLINE_PEOPLE__RECORDINGS_DIR": str(workdir / f"recordings-{name}")}
        environ.update(env or {})
        self.env = environ
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServeProcess":
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port), "--db", self.db_url,
             "--redis", REDIS_URL],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout_s: float = 900) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"serve {self.name} exited: {self.log_tail()}")
            try:
                r = httpx.get(f"{self.base}/readyz", timeout=2)
                if r.status_code == 200:
                    return
                if r.json().get("status") == "error":  # the models failed to load: it will never be ready
                    raise AssertionError(f"serve {self.name} failed to load: {r.json().get('error')}")
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"serve {self.name} not ready in {timeout_s} s: {self.log_tail()}")

    def process_id(self) -> str:
        """The cluster identity this process wrote into Redis (its pid is part of it)."""
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            prefix = self.env["HOTLINE_REDIS_PREFIX"]
            for member in client.smembers(prefix + ":cluster:procs"):
                pid = member.decode()
                if f":{self.proc.pid}:" in pid:
                    return pid
        finally:
            client.close()
        raise AssertionError(f"serve {self.name} is not in the cluster")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Nginx:
    """nginx with docs/nginx/hotline.conf (its ports rewritten) in a folder of its own, in the foreground."""

    def __init__(self, workdir: Path, upstream_ports: list[int]) -> None:
        exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if exe is None:
            pytest.fail("nginx is not installed: the scale-out test runs the documented configuration "
                        "(apt-get install nginx-light; setup.sh installs it)")
        self.port = free_port()
        self.dir = workdir / "nginx"
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        site = NGINX_CONF.read_text(encoding="utf-8")
        site = site.replace("listen 8000;", f"listen 127.0.0.1:{self.port};")
        site = site.replace("127.0.0.1:8001", f"127.0.0.1:{upstream_ports[0]}")
        site = site.replace("127.0.0.1:8002", f"127.0.0.1:{upstream_ports[1]}")
        (self.dir / "hotline.conf").write_text(site, encoding="utf-8")
        tmp = self.dir / "tmp"
        tmp.mkdir(exist_ok=True)
        (self.dir / "nginx.conf").write_text(
            f"daemon off;\nworker_processes 1;\npid {self.dir}/nginx.pid;\nerror_log {self.dir}/logs/error.log warn;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
            f"  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n"
            f"  include {self.dir}/hotline.conf;\n}}\n", encoding="utf-8")
        check = subprocess.run([exe, "-t", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([exe, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

