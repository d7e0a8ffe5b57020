"""One request through the gateway with the official Anthropic Python SDK, for the browser
tests: reads a JSON job on stdin, prints a JSON verdict on stdout.

Job: {"base_url", "model", "text", "headers" (extra request headers), "default_headers"}.
Verdict: {"ok": true, "text": ...} or {"ok": false, "status": ..., "error": ...}.
"""

import json
import sys

import anthropic

job = json.load(sys.stdin)
client = anthropic.Anthropic(
    base_url=job["base_url"],
    api_key="dummy-key",
    max_retries=0,
    default_headers=job.get("default_headers") or None,
)
try:
    msg = client.messages.create(
        model=job["model"],
        max_tokens=64,
        messages=[{"role": "user", "content": job["text"]}],
        extra_headers=job.get("headers") or None,
    )
    print(json.dumps({"ok": True, "text": "".join(b.text for b in msg.content if b.type == "text")}))
except anthropic.APIStatusError as e:
    print(json.dumps({"ok": False, "status": e.status_code, "error": str(e)}))
