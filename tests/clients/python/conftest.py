"""Harness for the Python `anthropic` SDK compatibility suite.

Starts one `heimdall-mock` (scripted upstream) and one `heimdall` gateway on
port 0 in a temporary directory for the whole session, and stops both at the end.
The gateway reaches every provider in ../providers.json through the mock. Tests of a
gateway setting start their own stack, with that setting merged into the config
(`direct_keys_stack`; `governance_stack` in test_governance.py), once per session (module) and
only if a test asks for it.

Binaries: HEIMDALL_BIN / HEIMDALL_MOCK_BIN, defaulting to
${CARGO_TARGET_DIR:-<repo>/target}/debug/heimdall{,-mock}.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib
from contextlib import contextmanager
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

# Every provider the suites reach through the mock, and the gateway config for them (shared
# with the node suites).
PROVIDERS_FILE = REPO_ROOT / "tests" / "clients" / "providers.json"
SERVICE_ACCOUNT_FILE = REPO_ROOT / "crates" / "heimdall-testkit" / "fixtures" / "service-account.json"
_PROVIDERS = json.loads(PROVIDERS_FILE.read_text())
PROVIDERS: list[dict] = _PROVIDERS["providers"]

ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
OPENAI_MODEL = "openai/gpt-4o-mini"
MODELS = [ANTHROPIC_MODEL, OPENAI_MODEL]

MOCK_ANTHROPIC_KEY = _PROVIDERS["config"]["providers"]["anthropic"]["keys"][0]["value"]
MOCK_OPENAI_KEY = _PROVIDERS["config"]["providers"]["openai"]["keys"][0]["value"]
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


def _merged(base, patch):
    """`base` with `patch` laid over it: objects merge key by key, anything else is replaced."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        out[key] = _merged(base[key], value) if key in base else value
    return out


def _write_config(workdir: Path, mock_url: str, config_patch: dict) -> None:
    """providers.json's config, with `config_patch` merged in, the mock's URL and the test
    service account filled in."""
    account = json.loads(SERVICE_ACCOUNT_FILE.read_text())
    account["token_uri"] = f"{mock_url}/token"
    text = json.dumps(_merged(_PROVIDERS["config"], config_patch), indent=2)
    text = text.replace('"{{service_account}}"', json.dumps(json.dumps(account)))
    text = text.replace("{{mock}}", mock_url)
    (workdir / "config.json").write_text(text)


@contextmanager
def _running_stack(prefix: str, config_patch: dict):
    """A mock and a gateway configured from providers.json plus `config_patch`, stopped (and
    their temp dir removed) on exit."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    mock = gateway = None
    try:
        mock = _start("heimdall-mock", [HEIMDALL_MOCK_BIN, "--port", "0"], workdir)
        _write_config(workdir, mock.url, config_patch)
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


# The gateway uses a client's own provider key (not a virtual key) in place of the configured
# keys; providers.json's keys stay, so tests can show they were not used.
DIRECT_KEYS_CONFIG = {"client": {"allow_direct_keys": True}}

# The fixtures that are a running stack (`governance_stack` is test_governance.py's own).
STACK_FIXTURES = ("stack", "direct_keys_stack", "governance_stack")


@pytest.fixture(scope="session")
def stack():
    with _running_stack("heimdall-pyclient-", {}) as st:
        yield st


@pytest.fixture(scope="session")
def direct_keys_stack():
    """A stack whose gateway has `client.allow_direct_keys` on."""
    with _running_stack("heimdall-pyclient-direct-keys-", DIRECT_KEYS_CONFIG) as st:
        yield st


@pytest.fixture(autouse=True)
def _fresh_mock_log(request):
    """Each test starts with an empty upstream request log."""
    for name in STACK_FIXTURES:
        if name in request.fixturenames:
            request.getfixturevalue(name).clear_mock_requests()
    yield


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    feature = item.get_closest_marker("feature")
    if rep.when == "call" and feature is not None:
        shown = item.funcargs.get("shown")
        showed = "fail" if not rep.passed else shown.outcome if shown is not None else "pass"
        _SHOWN.append({"provider": item.funcargs["provider"]["id"], "feature": feature.args[0], "outcome": showed})
    if rep.when == "call" and rep.failed:
        for name in STACK_FIXTURES:
            st = item.funcargs.get(name)
            if st is not None:
                rep.sections.append((f"{name}: heimdall gateway log (tail)", st.gateway.log_tail(3000)))
                rep.sections.append((f"{name}: heimdall-mock log (tail)", st.mock.log_tail(1500)))


@pytest.fixture(params=MODELS, ids=["anthropic", "openai"])
def model(request) -> str:
    return request.param


@pytest.fixture
def client(stack):
    import anthropic

    c = anthropic.Anthropic(base_url=stack.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30.0)
    yield c
    c.close()


# --------------------------------------------------------------------------- request and answer helpers


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the weather forecast for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
TIME_TOOL = {
    "name": "get_time",
    "description": "Get the local time in a timezone.",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}


ERROR_CASES = [
    # (directive status, expected HTTP status at the client, exception class name, error.type)
    (429, 429, "RateLimitError", "rate_limit_error"),
    (401, 401, "AuthenticationError", "authentication_error"),
    (400, 400, "BadRequestError", "invalid_request_error"),
    (500, 500, "InternalServerError", "api_error"),
    (529, 529, "OverloadedError", "overloaded_error"),
]


def sdk_exception(name: str):
    """Exception class by name; 0.75.0 keeps some only in anthropic._exceptions."""
    import anthropic

    return getattr(anthropic, name, None) or getattr(anthropic._exceptions, name)


def assert_upstream_error(client, model, status, client_status, exc_name, error_type) -> None:
    """`[[mock:error STATUS retry_after=7]]` reaches the client as the SDK's typed exception with
    an Anthropic error body, the request id, and (for 429) the upstream's retry-after."""
    import anthropic

    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=model, max_tokens=32, messages=user(f"[[mock:error {status} retry_after=7]]"))
    err = info.value
    assert isinstance(err, sdk_exception(exc_name)), f"{type(err).__name__}: {err}"
    assert err.status_code == client_status
    assert isinstance(err.body, dict), err.body
    assert err.body.get("type") == "error", err.body
    assert err.body["error"]["type"] == error_type, err.body
    assert isinstance(err.body["error"].get("message"), str)
    assert err.request_id, "request-id header missing on error"
    if status == 429:
        assert err.response.headers.get("retry-after") == "7"


def tiny_png() -> bytes:
    """A valid 1x1 red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def user(text_or_blocks) -> list[dict]:
    return [{"role": "user", "content": text_or_blocks}]


def text_of(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def tool_uses(message) -> list:
    return [b for b in message.content if b.type == "tool_use"]


def assistant_turn(message) -> dict:
    """Re-send an assistant message as history (only the fields the API accepts)."""
    blocks = []
    for b in message.content:
        if b.type == "thinking":
            blocks.append({"type": "thinking", "thinking": b.thinking, "signature": b.signature})
        elif b.type == "text":
            blocks.append({"type": "text", "text": b.text})
        elif b.type == "tool_use":
            blocks.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
    return {"role": "assistant", "content": blocks}


def assert_usage(message) -> None:
    assert message.usage.input_tokens > 0, message.usage
    assert message.usage.output_tokens > 0, message.usage


# The mock caps cached tokens at the prompt size, so the prompt is longer than 7 tokens.
CACHED_PROMPT = "[[mock:cached 7]] " + " ".join(f"word{i}" for i in range(40))


def assert_streams_text(client, model):
    """The SDK's stream helper yields the echo in several deltas and a complete final message."""
    with client.messages.stream(model=model, max_tokens=64, messages=user("stream me please, in pieces")) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "stream me please, in pieces"
    assert len(pieces) >= 2, f"expected several text deltas, got {pieces!r}"
    assert text_of(final) == "stream me please, in pieces"
    assert final.stop_reason == "end_turn"
    assert_usage(final)
    return final


def image_answer(client, model) -> str:
    """Sends a base64 PNG and a question; the mock's answer, which names what image arrived."""
    data = base64.b64encode(tiny_png()).decode()
    msg = client.messages.create(
        model=model,
        max_tokens=64,
        messages=user(
            [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
                {"type": "text", "text": "what is this"},
            ]
        ),
    )
    text = text_of(msg)
    assert text.startswith("what is this [image: "), text
    return text


def counted_tokens(client, model) -> int:
    """count_tokens for a system prompt, a tool and a message; a positive integer."""
    result = client.messages.count_tokens(
        model=model,
        system="You are helpful.",
        tools=[WEATHER_TOOL],
        messages=user("How many tokens is this sentence?"),
    )
    assert isinstance(result.input_tokens, int) and result.input_tokens > 0, result
    return result.input_tokens


# --------------------------------------------------------------------------- provider matrix
#
# Tests marked `@pytest.mark.feature(NAME)` that take the `provider` fixture are the per-provider
# feature tests; each one run is recorded as (provider, feature, outcome: what it showed, or
# `fail`), and the
# session writes them to $HEIMDALL_MATRIX_DIR/$HEIMDALL_CLIENT_ID.json for
# scripts/provider-matrix, which renders the README's provider matrix from what the suites showed.

_SHOWN: list[dict] = []


@pytest.fixture(params=PROVIDERS, ids=[p["id"] for p in PROVIDERS])
def provider(request) -> dict:
    return request.param


class Shown:
    """What a feature test showed for its provider: `pass`, or the documented alternative it
    asserted instead (`estimate` for a local token count, `none` for a feature the dialect lacks,
    `unsigned` for thinking without signatures, `configured` for a model listed from the config)."""

    def __init__(self) -> None:
        self.outcome = "pass"


@pytest.fixture
def shown() -> Shown:
    return Shown()


def pytest_sessionfinish(session, exitstatus):
    out_dir = os.environ.get("HEIMDALL_MATRIX_DIR")
    if not out_dir:
        return
    import anthropic

    client_id = os.environ.get("HEIMDALL_CLIENT_ID") or f"py-anthropic-{anthropic.__version__.split('.')[0]}"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    record = {
        "client": client_id,
        "label": f"Python anthropic {anthropic.__version__}",
        "results": _SHOWN,
    }
    (Path(out_dir) / f"{client_id}.json").write_text(json.dumps(record, indent=1))
