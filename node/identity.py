"""Ed25519 identities: key pairs, key files, and libp2p peer ids.

A member's libp2p identity key *is* its colony key, so one Ed25519 key proves
who is on the other end of a Noise handshake and is what the colony owner's
certificate names.

Key files are JSON, written with mode 0600 and refused when group or others
can read them (as ssh does), so a secret cannot silently leak through a lax
umask. Public key files hold no secret and may be shared.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from colonymesh.node.errors import InputError, KeyFileError

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SECRET_KIND = "colonymesh.ed25519.secret"
PUBLIC_KIND = "colonymesh.ed25519.public"
_KEY_FILE_BYTES_MAX = 4096

# libp2p's PublicKey protobuf for an Ed25519 key: field 1 (KeyType) = 1, then
# field 2 (Data) holding the 32 key bytes. Peer ids of keys this small are the
# identity multihash (code 0x00) of that encoding.
_LIBP2P_ED25519_PREFIX = bytes([0x08, 0x01, 0x12, PUBLIC_KEY_BYTES])
_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 key pair; the seed is the secret."""

    seed: bytes
    public_key: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_seed(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        signing_key = nacl.signing.SigningKey(seed)
        return cls(seed=seed, public_key=bytes(signing_key.verify_key))

    def sign(self, message: bytes) -> bytes:
        return nacl.signing.SigningKey(self.seed).sign(message).signature

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.public_key)

    def __repr__(self) -> str:  # never print the seed
        return f"KeyPair(peer_id={self.peer_id!r})"


class Signer:
    """A key pair with its pynacl signing key built once, for hot paths."""

    __slots__ = ("_signing_key", "public_key")

    def __init__(self, keys: KeyPair) -> None:
        self._signing_key = nacl.signing.SigningKey(keys.seed)
        self.public_key = keys.public_key

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature


def libp2p_public_key_bytes(public_key: bytes) -> bytes:
    """The protobuf-encoded libp2p ``PublicKey`` of an Ed25519 key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return _LIBP2P_ED25519_PREFIX + public_key


def peer_id_bytes(public_key: bytes) -> bytes:
    """The libp2p peer id (identity multihash) of an Ed25519 public key."""
    encoded = libp2p_public_key_bytes(public_key)
    return bytes([0x00, len(encoded)]) + encoded


def peer_id_of(public_key: bytes) -> str:
    """The libp2p peer id in its usual base58btc text form (``12D3KooW...``)."""
    return base58_encode(peer_id_bytes(public_key))


def public_key_from_peer_id(peer_id: str | bytes) -> bytes:
    """The Ed25519 public key inside a peer id; ``InputError`` if it holds another."""
    raw = base58_decode(peer_id) if isinstance(peer_id, str) else peer_id
    header = bytes([0x00, len(_LIBP2P_ED25519_PREFIX) + PUBLIC_KEY_BYTES]) + _LIBP2P_ED25519_PREFIX
    if len(raw) != len(header) + PUBLIC_KEY_BYTES or not raw.startswith(header):
        raise InputError("not the peer id of an Ed25519 key")
    return raw[len(header) :]


def base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_BASE58_ALPHABET[remainder])
    leading_zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * leading_zeros + "".join(reversed(digits))


def base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        position = _BASE58_ALPHABET.find(char)
        if position < 0:
            raise InputError(f"invalid base58 character {char!r}")
        number = number * 58 + position
    leading_zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * leading_zeros + body


# --- key files -------------------------------------------------------------


def write_key_file(path: Path, keys: KeyPair, *, overwrite: bool = False) -> None:
    """Write ``keys`` to ``path`` with mode 0600, durably; refuse to clobber."""
    document = {
        "kind": SECRET_KIND,
        "seed": keys.seed.hex(),
        "public_key": keys.public_key.hex(),
        "peer_id": keys.peer_id,
    }
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists (refusing to overwrite a key)") from None
    except OSError as error:
        raise KeyFileError(f"{path}: cannot write key file: {error.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(json.dumps(document, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_public_key_file(path: Path, public_key: bytes) -> None:
    document = {
        "kind": PUBLIC_KIND,
        "public_key": public_key.hex(),
        "peer_id": peer_id_of(public_key),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_KEY_FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such {what}") from None
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read {what}: {error.strerror}") from None
    if len(raw) > _KEY_FILE_BYTES_MAX:
        raise KeyFileError(f"{path}: too large to be a {what}")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f"{path}: corrupt {what} (not JSON)") from None
    if not isinstance(document, dict):
        raise KeyFileError(f"{path}: corrupt {what} (not a JSON object)")
    return document


def _hex_field(document: dict[str, Any], name: str, length: int, path: Path, what: str) -> bytes:
    value = document.get(name)
    try:
        decoded = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        decoded = None
    if decoded is None or len(decoded) != length:
        raise KeyFileError(f"{path}: corrupt {what} (field {name!r} is not {length} hex bytes)")
    return decoded


def read_key_file(path: Path) -> KeyPair:
    """Load a secret key file; refuse one that group or others may read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: key file is accessible by others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )
    document = _read_json(path, "key file")
    if document.get("kind") != SECRET_KIND:
        raise KeyFileError(f"{path}: not a colonymesh secret key file")
    seed = _hex_field(document, "seed", 32, path, "key file")
    keys = KeyPair.from_seed(seed)
    stated = document.get("public_key")
    if stated is not None and stated != keys.public_key.hex():
        raise KeyFileError(f"{path}: corrupt key file (public key does not match the seed)")
    return keys


def read_public_key(source: str) -> bytes:
    """A public key from a public or secret key file, a peer id, or 64 hex digits."""
    path = Path(source)
    if path.exists():
        document = _read_json(path, "key file")
        if document.get("kind") not in (PUBLIC_KIND, SECRET_KIND):
            raise KeyFileError(f"{path}: not a colonymesh key file")
        return _hex_field(document, "public_key", PUBLIC_KEY_BYTES, path, "key file")
    try:
        raw = bytes.fromhex(source)
    except ValueError:
        raw = b""
    if len(raw) == PUBLIC_KEY_BYTES:
        return raw
    if source.startswith("12D3Koo"):
        return public_key_from_peer_id(source)
    raise InputError(f"{source}: neither a key file, a peer id nor a 64-hex-digit public key")
