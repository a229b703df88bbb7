"""``ledger.protocol.safejson``: JSON from strangers is refused before it can overflow the C stack, and everything
else parses exactly as ``json.loads`` does."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.protocol import safejson

ATTACK = "[" * 80_000 + "]" * 80_000  # 160 KB: SIGSEGV in json.loads once py-evm raised the recursion limit


def test_safejson_refuses_the_deep_nesting_attack_as_too_deep() -> None:
    with pytest.raises(safejson.JsonRefused) as e:
        safejson.loads(ATTACK)
    assert e.value.reason == "too_deep"
    assert "64" in str(e.value)


@pytest.mark.parametrize(
    "doc",
    ["[" * 65 + "]" * 65, '{"a":' * 65 + "1" + "}" * 65, "[{\"a\":" * 33 + "1" + "}]" * 33, '{"x": [' + "[" * 64 + "]" * 64 + "]}"],
)
def test_safejson_refuses_depth_65_in_any_bracket_mix(doc: str) -> None:
    json.loads(doc)  # shallow enough for the C parser: the refusal is ours
    with pytest.raises(safejson.JsonRefused) as e:
        safejson.loads(doc)
    assert e.value.reason == "too_deep"


def test_safejson_accepts_depth_64_and_brackets_inside_strings() -> None:
    assert safejson.loads("[" * 64 + "]" * 64) is not None
    doc = {"s": "[[[[{{{{" * 100, "t": '\\"]]]]}}}}', "u": ["\\", "\\\\]"]}
    assert safejson.loads(json.dumps(doc)) == doc


@pytest.mark.parametrize("doc", ["[" * 80_000, "]" * 10, "[1,2", '{"a": [1}', "[" * 40 + "}" * 40 + "]"])
def test_safejson_refuses_unbalanced_brackets_without_parsing(doc: str) -> None:
    with pytest.raises(safejson.JsonRefused) as e:
        safejson.loads(doc)
    assert e.value.reason in ("malformed", "too_deep")
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("doc", [b"\xff\xfe", b"{'a': 1}", b"", b"nan", b"[1,]"])
def test_safejson_refuses_malformed_input_as_value_error(doc: bytes) -> None:
    with pytest.raises(safejson.JsonRefused) as e:
        safejson.loads(doc)
    assert e.value.reason == "malformed"


def test_safejson_check_is_linear_on_hostile_input() -> None:
    # Not a timing assertion on speed, a guard against a quadratic or Python-level scan: 4 MB of the
    # worst shapes must be decided in well under a second even on a loaded machine (measured: < 20 ms).
    worst = ["[" * 2_000_000 + "]" * 2_000_000, "[]" * 2_000_000, "[" * 60 + "[]" * 2_000_000 + "]" * 60]
    for doc in worst:
        t0 = time.process_time()
        try:
            safejson.check(doc.encode())
        except safejson.JsonRefused:
            pass
        assert time.process_time() - t0 < 1.0


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from('[]{}"\\ab,:')),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=30,
)


def _depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=1, max_value=8))
def test_safejson_equals_json_loads_within_the_limit_and_refuses_beyond(value: Any, limit: int) -> None:
    raw = json.dumps(value)
    if _depth(value) <= limit:
        assert safejson.loads(raw, max_depth=limit) == json.loads(raw)
    else:
        with pytest.raises(safejson.JsonRefused):
            safejson.loads(raw, max_depth=limit)


def test_auditor_and_attestor_refuse_a_hostile_bridges_deep_answer() -> None:
    """A bridge is a stranger to the auditor: its answer must not be able to kill the audit process."""
    import httpx

    from attestor.bridge import BridgeClient
    from attestor.errors import BridgeError
    from auditor.sources import ApiSource, AuditSourceError

    deep = httpx.MockTransport(lambda req: httpx.Response(200, content=ATTACK.encode()))
    src = ApiSource(client=httpx.Client(transport=deep, base_url="http://bridge"))
    with pytest.raises(AuditSourceError, match="not JSON"):
        src.lease_ids()
    node = BridgeClient("http://bridge", transport=deep)
    with pytest.raises(BridgeError, match="not JSON"):
        node.domain()
