"""Canonical encoding and content ids of specs.

A spec id names one *submission*: the same spec submitted twice by the same
submitter is two processes, but the same submission gossiped twice is one.
So the id hashes the normalised spec together with who submitted it and a
nonce the submitter picked::

    spec_id = sha256( canonical_cbor([DOMAIN, kind, spec, submitter, nonce]) ).hexdigest()

- ``DOMAIN`` is ``"colonymesh/spec-id/v1"``; ``kind`` is ``"function"`` or
  ``"workflow"``, so the two id spaces never collide.
- ``spec`` is ``to_json_obj()`` of a parsed spec: the normalised ColonyOS
  shape, every field present, defaults filled, ``env`` ordered by name.
  Quantities stay as written (``"1Gi"`` and ``"1024Mi"`` give different ids:
  the id names what the user wrote, not what it means).
- ``submitter`` is the submitter's public key (bytes); ``nonce`` 8 to 64
  bytes the submitter chose (random, or a counter).
- Canonical CBOR is RFC 8949 §4.2.1 core deterministic encoding, as cbor2
  writes it with ``canonical=True``: map keys sorted, shortest integer and
  float forms, definite lengths. It is the project's wire encoding, and it
  keeps ``1`` and ``1.0`` apart (canonical JSON would need a float rule).

The hex digest (64 characters) has the shape of a ColonyOS process id.
"""

from __future__ import annotations

import hashlib

import cbor2

from colonymesh.node.spec.errors import SpecError
from colonymesh.node.spec.model import FunctionSpec, WorkflowSpec

__all__ = ["NONCE_BYTES_MAX", "NONCE_BYTES_MIN", "canonical_cbor", "spec_id", "workflow_id"]

SPEC_ID_DOMAIN = "colonymesh/spec-id/v1"
NONCE_BYTES_MIN = 8
NONCE_BYTES_MAX = 64
SUBMITTER_BYTES_MAX = 256


def canonical_cbor(spec: FunctionSpec | WorkflowSpec) -> bytes:
    """The deterministic CBOR encoding of a spec's normalised JSON object."""
    encoded: bytes = cbor2.dumps(spec.to_json_obj(), canonical=True)
    return encoded


def _digest(kind: str, obj: dict[str, object], submitter: bytes, nonce: bytes) -> str:
    if not isinstance(submitter, bytes) or not 1 <= len(submitter) <= SUBMITTER_BYTES_MAX:
        raise SpecError("submitter", f"must be 1 to {SUBMITTER_BYTES_MAX} bytes")
    if not isinstance(nonce, bytes) or not NONCE_BYTES_MIN <= len(nonce) <= NONCE_BYTES_MAX:
        raise SpecError("nonce", f"must be {NONCE_BYTES_MIN} to {NONCE_BYTES_MAX} bytes")
    payload = cbor2.dumps([SPEC_ID_DOMAIN, kind, obj, submitter, nonce], canonical=True)
    return hashlib.sha256(payload).hexdigest()


def spec_id(spec: FunctionSpec, submitter: bytes, nonce: bytes) -> str:
    """The id of one submission of a function spec (64 hex characters)."""
    return _digest("function", spec.to_json_obj(), submitter, nonce)


def workflow_id(workflow: WorkflowSpec, submitter: bytes, nonce: bytes) -> str:
    """The id of one submission of a workflow spec (64 hex characters)."""
    return _digest("workflow", workflow.to_json_obj(), submitter, nonce)
