"""The admin API under schemathesis: cases generated from its own OpenAPI document
(`/api/openapi.json`) sent to the real gateway, every response checked against the document
(status, content type, headers, body schema), no 5xx, invalid input refused, and every
operation refused without credentials.

Bounded and reproducible: deterministic generation (no seed, no example database) and a cap on
the cases per operation, so a verdict follows from the code (a few hundred requests, seconds on
2 cores).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import ADMIN_TOKEN

# The schemathesis CLI of this venv (scripts/install-clients pins its version).
ST = str(Path(sys.executable).parent / "st")
MAX_EXAMPLES = "25"
# A full run generates about 450 cases; far fewer means a phase or an operation was lost.
MIN_CASES = 250
RUN_TIMEOUT_S = 180


def test_admin_api_conforms_to_its_openapi_document(stack):
    cmd = [
        ST, "run", f"{stack.gateway.url}/api/openapi.json",
        "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
        "--checks", "all",
        # Governance entities must also hold together with each other (a key naming a team
        # that exists, a reset duration such as `1d`): a body can be valid by the schema and
        # still be refused with 400 or 409, which is what this check would call a failure.
        "--exclude-checks", "positive_data_acceptance",
        # Stateful: the listing's link to a log feeds real ids to GET /api/logs/{id}.
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", MAX_EXAMPLES,
        # Same cases on every run, and nothing remembered between runs.
        "--generation-deterministic",
        "--workers", "1",
        "--request-timeout", "10",
        "--no-color",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    output = run.stdout + run.stderr
    assert run.returncode == 0, (
        f"schemathesis found problems (exit {run.returncode}):\n{output}\n"
        f"gateway log (tail):\n{stack.gateway.log_tail(3000)}"
    )
    # A run that generated (almost) nothing would pass as well: it must have done its work.
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) >= MIN_CASES, output
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in output, f"{phase} did not run and pass:\n{output}"
    print(output[output.rfind("\n", 0, output.find("SUMMARY")) + 1 :])
