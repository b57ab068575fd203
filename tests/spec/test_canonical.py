"""Submission ids: deterministic, sensitive to spec, submitter and nonce; blind to key order."""

from __future__ import annotations

import hashlib

import cbor2
import pytest

from colonymesh.node.spec import (
    SpecError,
    canonical_cbor,
    parse_function_spec,
    parse_workflow_spec,
    spec_id,
    workflow_id,
)

KEY = bytes(range(32))
NONCE = b"\x01" * 16
BASE = {
    "funcname": "f",
    "args": [1, "a"],
    "conditions": {"executortype": "t"},
    "env": {"B": "1", "A": "2"},
}


def test_id_is_sha256_of_the_documented_canonical_cbor() -> None:
    spec = parse_function_spec(BASE)
    payload = cbor2.dumps(
        ["colonymesh/spec-id/v1", "function", spec.to_json_obj(), KEY, NONCE], canonical=True
    )
    assert spec_id(spec, KEY, NONCE) == hashlib.sha256(payload).hexdigest()
    assert len(spec_id(spec, KEY, NONCE)) == 64


def test_id_ignores_key_order_and_normalised_defaults() -> None:
    a = parse_function_spec(BASE)
    reordered = {
        "env": {"A": "2", "B": "1"},
        "conditions": {"executortype": "t", "gpu": None},
        "args": [1, "a"],
        "funcname": "f",
        "maxwaittime": 0,
    }
    b = parse_function_spec(reordered)
    assert spec_id(a, KEY, NONCE) == spec_id(b, KEY, NONCE)
    assert canonical_cbor(a) == canonical_cbor(b)


def test_id_changes_with_every_input() -> None:
    spec = parse_function_spec(BASE)
    base_id = spec_id(spec, KEY, NONCE)
    assert spec_id(spec, KEY[::-1], NONCE) != base_id
    assert spec_id(spec, KEY, b"\x02" * 16) != base_id
    assert spec_id(parse_function_spec({**BASE, "args": [1.0, "a"]}), KEY, NONCE) != base_id
    assert spec_id(parse_function_spec({**BASE, "priority": 1}), KEY, NONCE) != base_id


def test_workflow_and_function_ids_never_collide() -> None:
    spec = parse_function_spec({**BASE, "nodename": "n"})
    wf = parse_workflow_spec({"colonyname": "", "functionspecs": [spec.to_json_obj()]})
    assert workflow_id(wf, KEY, NONCE) != spec_id(spec, KEY, NONCE)
    assert workflow_id(wf, KEY, NONCE) == workflow_id(parse_workflow_spec(wf.to_json()), KEY, NONCE)


@pytest.mark.parametrize(
    ("submitter", "nonce", "field"),
    [(b"", NONCE, "submitter"), (KEY, b"short", "nonce"), (KEY, b"x" * 65, "nonce")],
)
def test_bad_submitter_or_nonce(submitter: bytes, nonce: bytes, field: str) -> None:
    with pytest.raises(SpecError, match=f"^{field}: "):
        spec_id(parse_function_spec(BASE), submitter, nonce)
