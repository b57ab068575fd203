"""libp2p Noise: the XX handshake with signed Ed25519 identities, and its framing.

Owns one connection's security layer: the handshake
``Noise_XX_25519_ChaChaPoly_SHA256`` (``-> e``; ``<- e, ee, s, es``;
``-> s, se``) carrying libp2p's ``NoiseHandshakePayload`` (the identity key
and its signature over ``"noise-libp2p-static-key:" + static key``), then the
transport ciphers that seal each frame.

How it works: every message, in the handshake and after, is a 2-byte
big-endian length and at most 65535 bytes. The symmetric state (``ck``,
``h``, ``k``, ``n``) follows the Noise specification revision 34 literally;
HKDF and HMAC-SHA256 come from ``cryptography``, X25519 and ChaCha20-Poly1305
too, Ed25519 from pynacl through :mod:`colonymesh.node.identity`.

Invariants: the remote's identity key must be Ed25519 and its signature must
verify, else :class:`HandshakeFailed`; when the dialer named the key it
expects, any other key is :class:`PeerMismatch`. A nonce is never reused
(counters only grow; 2**64-1 is refused). Frames over 65535 bytes cannot be
expressed and plaintexts are cut at 65519.

Contract for the driver: the core owns no randomness — it takes the static
and ephemeral X25519 private keys as inputs (fresh ephemeral per
connection). Send ``data_to_send()`` after creating the initiator and after
every ``receive_data``; once :class:`HandshakeCompleted` comes out, use its
``sender``/``receiver`` and feed ``unconsumed`` to the receiver.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from colonymesh.node.identity import libp2p_public_key_bytes, verify_signature
from colonymesh.node.transport import protobuf
from colonymesh.node.transport.errors import (
    DecryptionFailed,
    FrameTooLarge,
    HandshakeFailed,
    LocalProtocolError,
    MalformedMessage,
    PeerMismatch,
    RemoteProtocolError,
)

PROTOCOL_ID = "/noise"
PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
FRAME_BYTES_MAX = 65535
TAG_BYTES = 16
PLAINTEXT_BYTES_MAX = FRAME_BYTES_MAX - TAG_BYTES
DH_BYTES = 32
_NONCE_MAX = (1 << 64) - 1
_KEY_TYPE_ED25519 = 1
_PAYLOAD_BYTES_MAX = 4096
_LENGTH = struct.Struct(">H")
_NONCE = struct.Struct("<4xQ")  # 4 zero bytes, then the 64-bit counter, little-endian


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class IdentitySigner(Protocol):
    """What the handshake needs of our identity (``KeyPair`` and ``Signer`` fit)."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


# --- the symmetric state --------------------------------------------------


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def _hkdf2(chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    temp = _hmac(chaining_key, ikm)
    out1 = _hmac(temp, b"\x01")
    return out1, _hmac(temp, out1 + b"\x02")


class CipherState:
    """A key and its nonce counter; ``None`` key means pass-through (Noise's empty k)."""

    __slots__ = ("_aead", "_nonce")

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = ChaCha20Poly1305(key) if key is not None else None
        self._nonce = 0

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    def _next_nonce(self) -> bytes:
        if self._nonce >= _NONCE_MAX:
            raise LocalProtocolError("Noise nonce space exhausted; reconnect")
        nonce = _NONCE.pack(self._nonce)
        self._nonce += 1
        return nonce

    def encrypt(self, ad: bytes, plaintext: bytes | memoryview) -> bytes:
        if self._aead is None:
            return bytes(plaintext)
        return self._aead.encrypt(self._next_nonce(), plaintext, ad or None)

    def encrypt_into(self, plaintext: memoryview, out: memoryview) -> None:
        """Seal ``plaintext`` into ``out`` (exactly 16 bytes longer), empty associated data."""
        if self._aead is None:
            raise LocalProtocolError("transport cipher without a key")
        self._aead.encrypt_into(self._next_nonce(), plaintext, None, out)

    def decrypt(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        if self._aead is None:
            return bytes(ciphertext)
        nonce = self._next_nonce()
        try:
            return self._aead.decrypt(nonce, ciphertext, ad or None)
        except InvalidTag:
            raise DecryptionFailed("Noise frame failed authentication") from None


class _SymmetricState:
    def __init__(self) -> None:
        # The protocol name is exactly HASHLEN (32) bytes, so h starts as the name itself.
        self.h = PROTOCOL_NAME
        self.ck = PROTOCOL_NAME
        self.cipher = CipherState()
        self.mix_hash(b"")  # empty prologue

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = _hkdf2(self.ck, ikm)
        self.cipher = CipherState(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        try:
            plaintext = self.cipher.decrypt(self.h, ciphertext)
        except DecryptionFailed:
            raise HandshakeFailed("Noise handshake message failed authentication") from None
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = _hkdf2(self.ck, b"")
        return CipherState(k1), CipherState(k2)


# --- the handshake payload --------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakePayload:
    identity_key: bytes  # the 32-byte Ed25519 key
    identity_sig: bytes
    stream_muxers: tuple[str, ...] = ()


def encode_payload(payload: HandshakePayload) -> bytes:
    fields: list[tuple[int, int | bytes | str]] = [
        (1, libp2p_public_key_bytes(payload.identity_key)),
        (2, payload.identity_sig),
    ]
    if payload.stream_muxers:
        extensions = protobuf.encode_message([(2, m) for m in payload.stream_muxers])
        fields.append((4, extensions))
    return protobuf.encode_message(fields)


def decode_public_key(encoded: bytes) -> bytes:
    """The Ed25519 key inside a libp2p ``PublicKey`` protobuf; other key types are refused."""
    fields = protobuf.decode_message(encoded, fields_max=8)
    key_type = protobuf.single_varint(fields, 1)
    data = protobuf.single_bytes(fields, 2)
    if key_type != _KEY_TYPE_ED25519:
        raise HandshakeFailed(f"identity key type {key_type} is not Ed25519")
    if data is None or len(data) != 32:
        raise HandshakeFailed("Ed25519 identity key is not 32 bytes")
    return data


def decode_payload(data: bytes) -> HandshakePayload:
    if len(data) > _PAYLOAD_BYTES_MAX:
        raise FrameTooLarge("Noise handshake payload too large")
    try:
        fields = protobuf.decode_message(data, fields_max=64)
        encoded_key = protobuf.single_bytes(fields, 1)
        signature = protobuf.single_bytes(fields, 2)
        extensions = protobuf.single_bytes(fields, 4)
        muxers: tuple[str, ...] = ()
        if extensions is not None:
            ext_fields = protobuf.decode_message(extensions, fields_max=64)
            muxers = tuple(
                protobuf.as_text(m, "stream muxer") for m in protobuf.repeated_bytes(ext_fields, 2)
            )
    except MalformedMessage as error:
        raise HandshakeFailed(f"malformed Noise handshake payload: {error}") from None
    if encoded_key is None or signature is None:
        raise HandshakeFailed("Noise handshake payload lacks identity key or signature")
    return HandshakePayload(decode_public_key(encoded_key), signature, muxers)


# --- transport framing ------------------------------------------------------


class NoiseSender:
    """Seals outbound bytes into length-prefixed Noise transport frames."""

    __slots__ = ("_cipher", "_sealed")

    def __init__(self, cipher: CipherState) -> None:
        self._cipher = cipher
        self._sealed = bytearray(4096)  # reused: fresh large buffers cost page faults

    def seal(self, plaintext: bytes | bytearray | memoryview) -> memoryview:
        """``plaintext`` cut into frames of at most 65519 bytes, each sealed and framed.

        Ciphertexts are written in place into one reused buffer; the view
        returned is valid until the next call to :meth:`seal`.
        """
        view = memoryview(plaintext)
        total = len(view)
        frames = max(1, -(-total // PLAINTEXT_BYTES_MAX))
        size = total + frames * (2 + TAG_BYTES)
        if size > len(self._sealed):
            self._sealed = bytearray(max(size, 2 * len(self._sealed)))  # never resize: views
        out = self._sealed
        out_view = memoryview(out)
        position = 0
        encrypt_into = self._cipher.encrypt_into
        pack_into = _LENGTH.pack_into
        for start in range(0, max(total, 1), PLAINTEXT_BYTES_MAX):
            chunk = view[start : start + PLAINTEXT_BYTES_MAX]
            sealed_bytes = len(chunk) + TAG_BYTES
            pack_into(out, position, sealed_bytes)
            encrypt_into(chunk, out_view[position + 2 : position + 2 + sealed_bytes])
            position += 2 + sealed_bytes
        return out_view[:position]


class NoiseReceiver:
    """Splits inbound bytes into frames and opens them, in order."""

    __slots__ = ("_buffer", "_cipher")

    def __init__(self, cipher: CipherState) -> None:
        self._cipher = cipher
        self._buffer = bytearray()  # at most one partial frame

    def receive_data(self, data: bytes | memoryview) -> list[bytes]:
        """The plaintexts of every whole frame now available (maybe none).

        ``data`` may be a view into the driver's reused read buffer: nothing
        here keeps a reference to it past the call (partial frames are copied).
        """
        out: list[bytes] = []
        position = 0
        end = len(data)
        decrypt = self._cipher.decrypt
        buffer = self._buffer
        if buffer:  # complete the partial frame from the front of ``data`` only
            if len(buffer) < 2:
                position = min(2 - len(buffer), end)
                buffer += data[:position]
                if len(buffer) < 2:
                    return out
            length = _frame_length(buffer[0], buffer[1])
            taken = min(2 + length - len(buffer), end - position)
            buffer += data[position : position + taken]
            position += taken
            if len(buffer) < 2 + length:
                return out
            out.append(decrypt(b"", bytes(buffer[2:])))
            buffer.clear()
        while end - position >= 2:
            length = _frame_length(data[position], data[position + 1])
            if end - position - 2 < length:
                break
            out.append(decrypt(b"", data[position + 2 : position + 2 + length]))
            position += 2 + length
        if position < end:
            buffer += data[position:]
        return out


def _frame_length(high: int, low: int) -> int:
    length = (high << 8) | low
    if length < TAG_BYTES:
        raise MalformedMessage(f"Noise frame of {length} bytes is shorter than its tag")
    return length


# --- the handshake --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    remote_identity_key: bytes  # Ed25519, verified
    remote_stream_muxers: tuple[str, ...]
    sender: NoiseSender
    receiver: NoiseReceiver
    unconsumed: bytes


class _Step(enum.Enum):
    SEND_E = "send-e"
    RECEIVE_E = "receive-e"
    SEND_E_EE_S_ES = "send-e-ee-s-es"
    RECEIVE_E_EE_S_ES = "receive-e-ee-s-es"
    SEND_S_SE = "send-s-se"
    RECEIVE_S_SE = "receive-s-se"
    DONE = "done"


def _x25519_public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # all-zero shared secret: a low-order point
        raise HandshakeFailed("remote X25519 key is a low-order point") from None


class NoiseHandshake:
    """One side of the libp2p Noise XX handshake."""

    def __init__(
        self,
        role: Role,
        identity: IdentitySigner,
        static_private: bytes,
        ephemeral_private: bytes,
        *,
        expected_identity_key: bytes | None = None,
        stream_muxers: tuple[str, ...] = (),
    ) -> None:
        if len(static_private) != DH_BYTES or len(ephemeral_private) != DH_BYTES:
            raise LocalProtocolError("X25519 private keys are 32 bytes")
        self.role = role
        self._identity = identity
        self._s = X25519PrivateKey.from_private_bytes(static_private)
        self._e = X25519PrivateKey.from_private_bytes(ephemeral_private)
        self._s_pub = _x25519_public(self._s)
        self._expected = expected_identity_key
        self._muxers = stream_muxers
        self._sym = _SymmetricState()
        self._re = b""
        self._rs = b""
        self._buffer = bytearray()
        self._out = bytearray()
        self._step = _Step.SEND_E if role is Role.INITIATOR else _Step.RECEIVE_E
        if role is Role.INITIATOR:
            self._write_message_1()

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> HandshakeCompleted | None:
        """Feed bytes; the completion once the last handshake message is processed."""
        if self._step is _Step.DONE:
            raise LocalProtocolError("handshake already complete")
        self._buffer += data
        while True:
            message = self._next_frame()
            if message is None:
                return None
            completed = self._read(message)
            if completed is not None:
                return completed

    def _next_frame(self) -> bytes | None:
        if len(self._buffer) < 2:
            return None
        length = _LENGTH.unpack_from(self._buffer)[0]
        if len(self._buffer) < 2 + length:
            return None
        message = bytes(self._buffer[2 : 2 + length])
        del self._buffer[: 2 + length]
        return message

    def _emit(self, message: bytes) -> None:
        if len(message) > FRAME_BYTES_MAX:
            raise LocalProtocolError("handshake message exceeds 65535 bytes")
        self._out += _LENGTH.pack(len(message)) + message

    def _payload(self) -> bytes:
        signature = self._identity.sign(SIGNATURE_PREFIX + self._s_pub)
        return encode_payload(HandshakePayload(self._identity.public_key, signature, self._muxers))

    def _read(self, message: bytes) -> HandshakeCompleted | None:
        match self._step:
            case _Step.RECEIVE_E:
                self._read_message_1(message)
                self._write_message_2()
                return None
            case _Step.RECEIVE_E_EE_S_ES:
                payload = self._read_message_2(message)
                self._write_message_3()
                return self._finish(payload)
            case _Step.RECEIVE_S_SE:
                payload = self._read_message_3(message)
                return self._finish(payload)
            case _Step.SEND_E | _Step.SEND_E_EE_S_ES | _Step.SEND_S_SE | _Step.DONE:
                raise RemoteProtocolError("unexpected Noise handshake message")

    # -> e
    def _write_message_1(self) -> None:
        e_pub = _x25519_public(self._e)
        self._sym.mix_hash(e_pub)
        self._emit(e_pub + self._sym.encrypt_and_hash(b""))
        self._step = _Step.RECEIVE_E_EE_S_ES

    def _read_message_1(self, message: bytes) -> None:
        if len(message) < DH_BYTES:
            raise HandshakeFailed("Noise message 1 is too short")
        self._re = message[:DH_BYTES]
        self._sym.mix_hash(self._re)
        self._sym.decrypt_and_hash(message[DH_BYTES:])  # libp2p sends no payload here
        self._step = _Step.SEND_E_EE_S_ES

    # <- e, ee, s, es
    def _write_message_2(self) -> None:
        e_pub = _x25519_public(self._e)
        self._sym.mix_hash(e_pub)
        self._sym.mix_key(_dh(self._e, self._re))
        encrypted_s = self._sym.encrypt_and_hash(self._s_pub)
        self._sym.mix_key(_dh(self._s, self._re))
        self._emit(e_pub + encrypted_s + self._sym.encrypt_and_hash(self._payload()))
        self._step = _Step.RECEIVE_S_SE

    def _read_message_2(self, message: bytes) -> HandshakePayload:
        if len(message) < DH_BYTES + DH_BYTES + TAG_BYTES + TAG_BYTES:
            raise HandshakeFailed("Noise message 2 is too short")
        self._re = message[:DH_BYTES]
        self._sym.mix_hash(self._re)
        self._sym.mix_key(_dh(self._e, self._re))
        self._rs = self._sym.decrypt_and_hash(message[DH_BYTES : 2 * DH_BYTES + TAG_BYTES])
        self._sym.mix_key(_dh(self._e, self._rs))
        return self._verify(self._sym.decrypt_and_hash(message[2 * DH_BYTES + TAG_BYTES :]))

    # -> s, se
    def _write_message_3(self) -> None:
        encrypted_s = self._sym.encrypt_and_hash(self._s_pub)
        self._sym.mix_key(_dh(self._s, self._re))
        self._emit(encrypted_s + self._sym.encrypt_and_hash(self._payload()))

    def _read_message_3(self, message: bytes) -> HandshakePayload:
        if len(message) < DH_BYTES + TAG_BYTES + TAG_BYTES:
            raise HandshakeFailed("Noise message 3 is too short")
        self._rs = self._sym.decrypt_and_hash(message[: DH_BYTES + TAG_BYTES])
        self._sym.mix_key(_dh(self._e, self._rs))
        return self._verify(self._sym.decrypt_and_hash(message[DH_BYTES + TAG_BYTES :]))

    def _verify(self, raw_payload: bytes) -> HandshakePayload:
        payload = decode_payload(raw_payload)
        if not verify_signature(
            payload.identity_key, SIGNATURE_PREFIX + self._rs, payload.identity_sig
        ):
            raise HandshakeFailed("identity signature over the Noise static key does not verify")
        if self._expected is not None and payload.identity_key != self._expected:
            raise PeerMismatch("remote proved a different identity than the one dialled")
        return payload

    def _finish(self, payload: HandshakePayload) -> HandshakeCompleted:
        c1, c2 = self._sym.split()
        send, receive = (c1, c2) if self.role is Role.INITIATOR else (c2, c1)
        self._step = _Step.DONE
        rest = bytes(self._buffer)
        self._buffer.clear()
        return HandshakeCompleted(
            remote_identity_key=payload.identity_key,
            remote_stream_muxers=payload.stream_muxers,
            sender=NoiseSender(send),
            receiver=NoiseReceiver(receive),
            unconsumed=rest,
        )
