"""Kubernetes-safe names: DNS-1123 labels for objects and containers, label values.

A colony process id is 64 hex characters and a Job name may have at most 63
(its pods carry it in the ``job-name`` label), so names are built as
``<prefix>-<process id>``, lower-cased, with anything outside ``[a-z0-9-]``
turned into ``-``; a name that had to be changed or cut gets a 10-hex-digit
hash of the original appended, so two different processes never share a
name. Pure functions.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "DNS1123_LABEL_CHARS_MAX",
    "container_name_from_image",
    "is_dns1123_label",
    "is_label_value",
    "numbered",
    "workload_name",
]

DNS1123_LABEL_CHARS_MAX = 63
_HASH_HEX = 10
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")


def is_dns1123_label(name: str) -> bool:
    return len(name) <= DNS1123_LABEL_CHARS_MAX and bool(_DNS1123_LABEL.match(name))


def is_label_value(value: str) -> bool:
    return len(value) <= DNS1123_LABEL_CHARS_MAX and bool(_LABEL_VALUE.match(value))


def _squash(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def workload_name(prefix: str, process_id: str) -> str:
    """A DNS-1123 label naming the Job/Deployment of ``process_id``; injective in practice."""
    original = f"{prefix}-{process_id}" if prefix else process_id
    squashed = _squash(original)
    if squashed == original and is_dns1123_label(squashed):
        return squashed
    digest = hashlib.sha256(original.encode("utf-8")).hexdigest()[:_HASH_HEX]
    stem = squashed[: DNS1123_LABEL_CHARS_MAX - _HASH_HEX - 1].strip("-")
    return f"{stem}-{digest}" if stem else f"x-{digest}"


def numbered(name: str, index: int) -> str:
    """``name-index``, cut so that the result is still a DNS-1123 label."""
    suffix = f"-{index}"
    return name[: DNS1123_LABEL_CHARS_MAX - len(suffix)].rstrip("-") + suffix


def container_name_from_image(image: str) -> str | None:
    """kubectl's container name for an image (``ghcr.io/a/nginx:1`` -> ``nginx``), if valid.

    kubectl appends a random suffix when it must sanitise the name; colonymesh
    never does anything random, so it returns ``None`` and the caller uses
    its own deterministic name instead.
    """
    base = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return base if is_dns1123_label(base) else None
