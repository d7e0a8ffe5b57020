"""Harness of the admin API's schemathesis run: one `heimdall-mock` and one `heimdall` gateway
on port 0 in a temporary directory, the gateway with the logs store on (SQLite, its default)
and `client.admin_auth` set, and a few requests sent through it so that the logs API has
records (success, stream, upstream error, refusal) to answer with.

Binaries: HEIMDALL_BIN / HEIMDALL_MOCK_BIN, defaulting to
${CARGO_TARGET_DIR:-<repo>/target}/debug/heimdall{,-mock}.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
HEIMDALL_BIN = os.environ.get("HEIMDALL_BIN") or str(TARGET_DIR / "debug" / "heimdall")
HEIMDALL_MOCK_BIN = os.environ.get("HEIMDALL_MOCK_BIN") or str(TARGET_DIR / "debug" / "heimdall-mock")

# What the admin API asks for in this run; a test value, not a secret.
ADMIN_TOKEN = "schemathesis-admin-token"
LISTEN_RE = re.compile(r"listening on (http://[0-9.:\[\]a-z]+)")
START_TIMEOUT_S = 30.0


@dataclass
class Proc:
    popen: subprocess.Popen
    log_path: Path
    url: str = ""

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "<no log>"


def _start(name: str, cmd: list[str], workdir: Path) -> Proc:
    if not os.access(cmd[0], os.X_OK):
        pytest.exit(f"{name} binary not found or not executable: {cmd[0]}", returncode=2)
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env={**os.environ, "NO_COLOR": "1"},
            start_new_session=True,
        )
    proc = Proc(popen, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        m = LISTEN_RE.search(proc.log_tail(100_000))
        if m:
            proc.url = m.group(1).rstrip("/")
            return proc
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {popen.returncode} before listening:\n{proc.log_tail()}")
        time.sleep(0.05)
    _stop(proc)
    raise RuntimeError(f"{name} did not listen within {START_TIMEOUT_S}s:\n{proc.log_tail()}")


def _stop(proc: Proc) -> None:
    if proc.popen.poll() is not None:
        return
    os.killpg(proc.popen.pid, signal.SIGTERM)
    try:
        proc.popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(timeout=5)


def _call(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _fill_logs(gateway_url: str) -> None:
    """A few requests of each outcome, then waits until the logs API lists them all."""
    messages = gateway_url + "/anthropic/v1/messages"
    sent = [
        ({"model": "claude-sonnet-4-5-20250929", "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]}, 200),
        ({"model": "openai/gpt-4o-mini", "max_tokens": 32, "stream": True, "messages": [{"role": "user", "content": "a stream"}]}, 200),
        ({"model": "openai/gpt-4o-mini", "max_tokens": 32, "messages": [{"role": "user", "content": "[[mock:error 429]]"}]}, 429),
        ({"model": "nowhere/model", "max_tokens": 32, "messages": [{"role": "user", "content": "refused"}]}, 400),
    ]
    for body, want in sent:
        status, answer = _call(messages, body, {"anthropic-version": "2023-06-01"})
        assert status == want, f"{body['model']}: {status} {answer[:500]!r}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, page = _call(gateway_url + "/api/logs", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        if status == 200 and json.loads(page)["pagination"]["total_count"] >= len(sent):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the logs API did not list the {len(sent)} requests within 10 s")


@dataclass
class Stack:
    mock: Proc
    gateway: Proc


@pytest.fixture(scope="session")
def stack():
    workdir = Path(tempfile.mkdtemp(prefix="heimdall-schemathesis-"))
    mock = gateway = None
    try:
        mock = _start("heimdall-mock", [HEIMDALL_MOCK_BIN, "--port", "0"], workdir)
        upstream = {"keys": [{"name": "mock", "value": "mock-key", "models": ["*"]}],
                    "network_config": {"base_url": mock.url}}
        config = {
            "client": {"admin_auth": {"type": "bearer", "token": ADMIN_TOKEN}},
            "providers": {"anthropic": upstream, "openai": upstream},
        }
        (workdir / "config.json").write_text(json.dumps(config, indent=2))
        gateway = _start(
            "heimdall",
            [HEIMDALL_BIN, "--app-dir", str(workdir), "--port", "0", "--host", "127.0.0.1", "--log-format", "json"],
            workdir,
        )
        _fill_logs(gateway.url)
        yield Stack(mock=mock, gateway=gateway)
    finally:
        for p in (gateway, mock):
            if p is not None:
                _stop(p)
        if os.environ.get("HEIMDALL_KEEP_LOGS"):
            print(f"\nschemathesis logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
