"""Harness for the Python `anthropic` SDK compatibility suite.

Starts one `heimdall-mock` (scripted upstream) and one `heimdall` gateway on
port 0 in a temporary directory for the whole session, and stops both at the end.

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
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
HEIMDALL_BIN = os.environ.get("HEIMDALL_BIN") or str(TARGET_DIR / "debug" / "heimdall")
HEIMDALL_MOCK_BIN = os.environ.get("HEIMDALL_MOCK_BIN") or str(TARGET_DIR / "debug" / "heimdall-mock")
# The testkit's strict Anthropic stream grammar checker, shared with the Rust tests.
HEIMDALL_SSE_CHECK_BIN = os.environ.get("HEIMDALL_SSE_CHECK_BIN") or str(
    TARGET_DIR / "debug" / "heimdall-sse-check"
)

ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
OPENAI_MODEL = "openai/gpt-4o-mini"
MODELS = [ANTHROPIC_MODEL, OPENAI_MODEL]

MOCK_ANTHROPIC_KEY = "mock-anthropic-key"
MOCK_OPENAI_KEY = "mock-openai-key"
# The key the client uses. The gateway must never forward it upstream.
CLIENT_KEY = "sk-client-secret-must-not-leak-0000"

LISTEN_RE = re.compile(r"listening on (http://[0-9.:\[\]a-z]+)")
START_TIMEOUT_S = 30.0
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    url: str = ""

    def log_tail(self, n: int = 4000) -> str:
        try:
            return ANSI_RE.sub("", self.log_path.read_text(errors="replace"))[-n:]
        except OSError:
            return "<no log>"


def _start(name: str, cmd: list[str], workdir: Path) -> Proc:
    if not os.access(cmd[0], os.X_OK):
        pytest.exit(f"{name} binary not found or not executable: {cmd[0]}", returncode=2)
    log_path = workdir / f"{name}.log"
    log = open(log_path, "wb")
    popen = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=workdir,
        env={**os.environ, "NO_COLOR": "1"},
        start_new_session=True,
    )
    log.close()
    proc = Proc(name, popen, log_path)
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
    raise RuntimeError(f"{name} did not print its listening line within {START_TIMEOUT_S}s:\n{proc.log_tail()}")


def _stop(proc: Proc) -> None:
    if proc.popen.poll() is not None:
        return
    try:
        os.killpg(proc.popen.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(timeout=5)


@dataclass
class Stack:
    mock: Proc
    gateway: Proc
    workdir: Path
    extra: dict = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """What an Anthropic SDK user puts in base_url."""
        return self.gateway.url + "/anthropic"

    def _mock_call(self, method: str) -> bytes:
        req = urllib.request.Request(self.mock.url + "/_mock/requests", method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    def mock_requests(self) -> list[dict]:
        """Requests the upstream mock received, oldest first; `headers` normalised to a dict
        with lowercase names (the mock records them as [name, value] pairs)."""
        calls = json.loads(self._mock_call("GET") or b"[]")
        for call in calls:
            call["headers"] = _header_dict(call.get("headers"))
        return calls

    def clear_mock_requests(self) -> None:
        self._mock_call("DELETE")

    def upstream_calls(self, path_part: str) -> list[dict]:
        return [r for r in self.mock_requests() if path_part in r.get("path", "")]


def _header_dict(headers) -> dict[str, str]:
    if isinstance(headers, dict):
        return {k.lower(): v for k, v in headers.items()}
    out: dict[str, str] = {}
    for name, value in headers or []:
        name = name.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _write_config(workdir: Path, mock_url: str) -> None:
    config = {
        "providers": {
            "anthropic": {
                "keys": [{"name": "mock", "value": MOCK_ANTHROPIC_KEY, "models": ["*"], "weight": 1}],
                "network_config": {"base_url": mock_url},
            },
            "openai": {
                "keys": [{"name": "mock", "value": MOCK_OPENAI_KEY, "models": ["*"], "weight": 1}],
                "network_config": {"base_url": mock_url},
            },
        }
    }
    (workdir / "config.json").write_text(json.dumps(config, indent=2))


@pytest.fixture(scope="session")
def stack():
    workdir = Path(tempfile.mkdtemp(prefix="heimdall-pyclient-"))
    mock = gateway = None
    try:
        mock = _start("heimdall-mock", [HEIMDALL_MOCK_BIN, "--port", "0"], workdir)
        _write_config(workdir, mock.url)
        gateway = _start(
            "heimdall",
            [HEIMDALL_BIN, "--app-dir", str(workdir), "--port", "0", "--host", "127.0.0.1"],
            workdir,
        )
        yield Stack(mock=mock, gateway=gateway, workdir=workdir)
    finally:
        for p in (gateway, mock):
            if p is not None:
                _stop(p)
        if os.environ.get("HEIMDALL_KEEP_LOGS"):
            print(f"\nclient-test logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_mock_log(request):
    """Each test starts with an empty upstream request log."""
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").clear_mock_requests()
    yield


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed and "stack" in item.fixturenames:
        st = item.funcargs.get("stack")
        if st is not None:
            rep.sections.append(("heimdall gateway log (tail)", st.gateway.log_tail(3000)))
            rep.sections.append(("heimdall-mock log (tail)", st.mock.log_tail(1500)))


@pytest.fixture(params=MODELS, ids=["anthropic", "openai"])
def model(request) -> str:
    return request.param


@pytest.fixture
def client(stack):
    import anthropic

    c = anthropic.Anthropic(base_url=stack.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30.0)
    yield c
    c.close()
