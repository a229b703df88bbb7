"""The API contract holds: every error code the bridge can answer is in the one table (api/error_codes.py) with
its status, the README shows that table, the OpenAPI document carries it with security schemes, and /docs
works without internet."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from api.error_codes import ERROR_CODES, STATUS_OF, markdown_table

REPO = Path(__file__).resolve().parents[2]

# how the bridge's code names an error: ApiError(status, "code"), Conflict("code"), code="code" (Forbidden, Invalid),
# (status, "code") pairs in refusal tables, and NotFound("what") -> unknown_<what>
_PATTERNS = (
    (re.compile(r'(?:ApiError|_err)\(\s*(\d{3}),\s*"([a-z_]+)"'), None),
    (re.compile(r'Conflict\(\s*"([a-z_]+)"'), 409),
    (re.compile(r'Forbidden\([^)]*code="([a-z_]+)"'), 403),
    (re.compile(r'Invalid\([^)]*code="([a-z_]+)"'), 422),
    (re.compile(r'\(\s*(\d{3}),\s*"([a-z_]+)"\)'), None),
    (re.compile(r'NotFound\(\s*"([a-z_]+)"'), 404),
)


def _raised() -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for path in (REPO / "api").rglob("*.py"):
        text = path.read_text()
        for pattern, status in _PATTERNS:
            for m in pattern.finditer(text):
                if status is None:
                    found.add((m.group(2), int(m.group(1))))
                elif pattern.pattern.startswith("NotFound"):
                    found.add((f"unknown_{m.group(1)}", status))
                else:
                    found.add((m.group(1), status))
    return found


def test_every_error_the_code_raises_is_in_the_table_with_its_status() -> None:
    raised = _raised()
    assert len(raised) > 30  # the scanner sees the code's errors
    missing = sorted((c, s) for c, s in raised if STATUS_OF.get(c) != s)
    assert not missing, f"error codes raised but not in api/error_codes.py with that status: {missing}"
    assert len({c for c, _, _ in ERROR_CODES}) == len(ERROR_CODES)  # one row per code


def test_the_readme_shows_the_table() -> None:
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme, "README.md's error table differs from api/error_codes.py: paste markdown_table()"


def test_openapi_has_security_schemes_and_error_codes_and_docs_work_offline(bridge: TestClient) -> None:
    doc = bridge.get("/openapi.json").json()
    assert set(doc["components"]["securitySchemes"]) == {"apiKey", "walletAddress"}
    assert {e["code"] for e in doc["x-error-codes"]} == {c for c, _, _ in ERROR_CODES}
    assert doc["paths"]["/v1/providers"]["post"]["security"] == [{"apiKey": []}, {"walletAddress": []}]
    assert {} in doc["paths"]["/v1/leases/{leaseId}/release-earnings"]["post"]["security"]  # anyone
    assert "security" not in doc["paths"]["/v1/offers"]["get"]
    html = bridge.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    js = bridge.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
