"""Connection gating: nothing of the colony runs on a connection until its peer is admitted.

How it works. Right after a connection is up (Noise proved the remote's
Ed25519 key, yamux is running), the dialer opens a stream speaking
:data:`PROTOCOL_ID` and sends one length-prefixed frame: a signed
``colony.present`` envelope carrying its certificate. The listener judges it
(:func:`judge_presentation`), and only if it admits the dialer answers with
its own presentation, which the dialer judges in turn. A refusal closes the
whole connection and is counted under its :class:`RefusalCause`.

Why a stream and not the transport's gate hook: the hook runs inside the
Noise handshake and sees only the proven key; libp2p's handshake payload has
no room for our certificate without an extension other libp2p peers would
not send. The hook is still used, for what it can decide from the key alone:
a key refused as revoked in the last minute is refused again before yamux
starts (so a revoked member redialling in a loop costs one handshake each).

Invariants:

* an unadmitted connection may negotiate only the membership protocol (and
  identify/ping if strangers are allowed): the host's stream filter answers
  ``na`` to the rest (:meth:`Gatekeeper.stream_filter`);
* a colony stream handler (wrapped by :meth:`Gatekeeper.guard`) runs only
  on an admitted connection; a stream arriving while the presentation is in
  flight waits for the verdict, one arriving before any presentation is
  reset at once;
* the certificate's member key, the envelope's sender and the Noise-proven
  key are one key (else :attr:`RefusalCause.KEY_MISMATCH`);
* a connection that has not presented within ``presentation_timeout_s`` (or,
  with ``allow_strangers_identify_ping``, the longer ``strangers_grace_s``)
  is cut and counted as :attr:`RefusalCause.NO_CERTIFICATE`;
* an admitted connection whose certificate is later revoked or expires is
  cut at the next sweep (every ``sweep_interval_s``, at once on
  :meth:`Gatekeeper.wake`);
* one connection per peer: when two peers dial each other at once, both
  sides keep the connection dialled by the lower peer id (a rule both can
  evaluate alone, so they never retire opposite ones) and retire the other:
  GoAway at once (no new streams), closed when its streams are done or after
  ``duplicate_grace_s``.

The judging function is pure (``now`` is an argument); the
:class:`Gatekeeper` is its trio driver and owns one sweeper task in the
peer's nursery.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from colonymesh.node import schema, wire
from colonymesh.node.certs import Certificate, Membership, decode_record, encode_record
from colonymesh.node.envelope import EnvelopeOpener, EnvelopeSealer, kind_of
from colonymesh.node.errors import (
    CertificateExpired,
    CertificateInvalid,
    CertificateRevoked,
    ColonymeshError,
    ForeignColony,
    WireError,
)
from colonymesh.node.messages import PresentCertificate
from colonymesh.node.peer.errors import NotAdmitted, StreamEnded
from colonymesh.node.peer.framing import receive_frame, send_frame
from colonymesh.node.transport import identify, ping
from colonymesh.node.transport.connection import Connection, StreamHandler
from colonymesh.node.transport.errors import TransportError
from colonymesh.node.transport.host import Host
from colonymesh.node.transport.stream import MuxedStream
from colonymesh.node.transport.upgrade import SecuredPeer

log = logging.getLogger("colonymesh.node.peer")

PROTOCOL_ID = "/colonymesh/membership/1.0.0"
PRESENTATION_BYTES_MAX = 32 * 1024
_REVOKED_KEYS_MAX = 4096
_REVOKED_KEY_HOLD_S = 60.0
_LIBP2P_PROTOCOLS = (identify.PROTOCOL_ID, ping.PROTOCOL_ID)
_PRESENT_KIND = kind_of(PresentCertificate(b""))
_NETWORK_ERRORS = (
    TransportError,
    WireError,
    ColonymeshError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


class RefusalCause(enum.Enum):
    NO_CERTIFICATE = "no_certificate"
    EXPIRED = "expired"
    REVOKED = "revoked"
    FOREIGN_COLONY = "foreign_colony"
    INVALID_CERTIFICATE = "invalid_certificate"
    KEY_MISMATCH = "key_mismatch"
    BAD_ENVELOPE = "bad_envelope"
    OVER_CAPACITY = "over_capacity"


class Refused(ColonymeshError):
    """A presentation did not admit its sender; ``cause`` says why."""

    def __init__(self, cause: RefusalCause, message: str) -> None:
        super().__init__(f"{cause.value}: {message}")
        self.cause = cause


@dataclass(frozen=True, slots=True)
class GatingConfig:
    # How long a connection may stay up without presenting a certificate.
    presentation_timeout_s: float = 3.0
    # Let strangers run libp2p identify and ping (interop peers) for a grace period.
    allow_strangers_identify_ping: bool = False
    strangers_grace_s: float = 5.0
    # How often admitted connections are re-checked against revocations and expiry.
    sweep_interval_s: float = 0.5
    # Admitted peers at most; more are refused as OVER_CAPACITY.
    peers_max: int = 256
    # How long a retired duplicate connection may finish its streams.
    duplicate_grace_s: float = 10.0


def _peek_presentation(frame: bytes) -> PresentCertificate:
    """The body of a presentation frame, before its sender can be checked.

    The opener checks a sender against the certificates it knows, and this
    frame is how it comes to know this one; so the certificate is read first
    and the whole envelope verified once it is admitted.
    """
    try:
        outer = wire.decode(frame, frame_bytes_max=PRESENTATION_BYTES_MAX)
        if not (isinstance(outer, list) and len(outer) == 3 and isinstance(outer[1], bytes)):
            raise Refused(RefusalCause.BAD_ENVELOPE, "not an envelope")
        inner = wire.decode(outer[1], frame_bytes_max=PRESENTATION_BYTES_MAX)
        if not (isinstance(inner, list) and len(inner) == 6 and inner[2] == _PRESENT_KIND):
            raise Refused(RefusalCause.BAD_ENVELOPE, f"expected a {_PRESENT_KIND!r} envelope")
        return schema.from_plain(PresentCertificate, inner[5], "present")
    except WireError as error:
        raise Refused(RefusalCause.BAD_ENVELOPE, str(error)) from None


def judge_presentation(
    frame: bytes,
    remote_key: bytes,
    membership: Membership,
    opener: EnvelopeOpener,
    now: float,
) -> Certificate:
    """Admit the sender of ``frame`` (proven by Noise to hold ``remote_key``) or raise ``Refused``.

    On success the certificate is admitted into ``membership``.
    """
    present = _peek_presentation(frame)
    if not present.certificate:
        raise Refused(RefusalCause.NO_CERTIFICATE, "presented no certificate")
    try:
        certificate = decode_record(Certificate, present.certificate)
        if certificate.member_key != remote_key:  # someone else's certificate, whatever its state
            raise Refused(
                RefusalCause.KEY_MISMATCH, "certificate names another key than the Noise one"
            )
        membership.check(certificate, now)
    except ForeignColony as error:
        raise Refused(RefusalCause.FOREIGN_COLONY, str(error)) from None
    except CertificateRevoked as error:
        raise Refused(RefusalCause.REVOKED, str(error)) from None
    except CertificateExpired as error:
        raise Refused(RefusalCause.EXPIRED, str(error)) from None
    except CertificateInvalid as error:
        raise Refused(RefusalCause.INVALID_CERTIFICATE, str(error)) from None
    membership.admit(certificate, now)
    try:
        envelope = opener.open(frame, now)
    except WireError as error:
        raise Refused(RefusalCause.BAD_ENVELOPE, f"{type(error).__name__}: {error}") from None
    if envelope.sender != remote_key:
        raise Refused(
            RefusalCause.KEY_MISMATCH, "envelope signed by another key than the Noise one"
        )
    return certificate


@dataclass(slots=True)
class _Admission:
    connection: Connection
    since: float
    started: bool = False  # a presentation is being exchanged
    certificate: Certificate | None = None
    refused: RefusalCause | None = None
    decided: trio.Event | None = None

    def event(self) -> trio.Event:
        if self.decided is None:
            self.decided = trio.Event()
        return self.decided


class Gatekeeper:
    """Admits or cuts every connection of one :class:`Host` (see the module docs)."""

    def __init__(
        self,
        membership: Membership,
        opener: EnvelopeOpener,
        sealer: EnvelopeSealer,
        certificate: Certificate | None,
        clock: Callable[[], float],
        config: GatingConfig,
    ) -> None:
        self.membership = membership
        self.config = config
        self._opener = opener
        self._sealer = sealer
        self._certificate = certificate
        self._clock = clock
        self._admissions: dict[Connection, _Admission] = {}
        self._wake = trio.Event()
        self._host: Host | None = None
        self._nursery: trio.Nursery | None = None
        self.refused: dict[str, int] = {cause.value: 0 for cause in RefusalCause}
        self.cut_later: dict[str, int] = {"revoked": 0, "expired": 0}
        self.admitted_total = 0
        self.rejected_by_remote = 0
        # Keys refused as revoked, so their next attempts stop at the handshake (bounded).
        self._revoked_keys: OrderedDict[bytes, float] = OrderedDict()
        self.streams_refused = 0
        self.duplicates_retired = 0
        # Called with the admitted connection, its certificate and its revocations_seen.
        self.on_admitted: Callable[[Connection, Certificate, int], None] | None = None
        # How many revocations we hold, told in our presentation.
        self.revocations_held: Callable[[], int] = lambda: 0

    # --- wiring ------------------------------------------------------------------

    def attach(self, host: Host, nursery: trio.Nursery) -> None:
        """Serve the membership protocol on ``host`` and start the sweeper."""
        self._host = host
        self._nursery = nursery
        host.set_stream_handler(PROTOCOL_ID, self._serve_presentation)
        nursery.start_soon(self._sweeper)

    async def gate(self, peer: SecuredPeer) -> bool:
        """The transport's gate hook: a key just refused as revoked stops at the handshake.

        Only for a minute (``_REVOKED_KEY_HOLD_S``): the owner may re-admit the
        same key with a new certificate, which must then be heard.
        """
        self.wake()
        refused_at = self._revoked_keys.get(peer.public_key)
        if refused_at is not None and trio.current_time() - refused_at < _REVOKED_KEY_HOLD_S:
            self._count(RefusalCause.REVOKED, peer.peer_id, "revoked key, refused at handshake")
            return False
        return True

    def wake(self) -> None:
        self._wake.set()

    # --- state ---------------------------------------------------------------------

    def _admission(self, connection: Connection) -> _Admission:
        admission = self._admissions.get(connection)
        if admission is None:
            admission = _Admission(connection, trio.current_time())
            self._admissions[connection] = admission
        return admission

    def is_admitted(self, connection: Connection) -> bool:
        admission = self._admissions.get(connection)
        return admission is not None and admission.certificate is not None

    def certificate_of(self, connection: Connection) -> Certificate | None:
        admission = self._admissions.get(connection)
        return None if admission is None else admission.certificate

    def admitted_connections(self) -> list[Connection]:
        return [
            a.connection
            for a in self._admissions.values()
            if a.certificate is not None and not a.connection.is_closed
        ]

    def _admitted_peers(self) -> set[str]:
        return {c.remote_peer_id for c in self.admitted_connections()}

    def _count(self, cause: RefusalCause, peer_id: str, message: str) -> None:
        self.refused[cause.value] += 1
        log.warning("refused peer %s: %s (%s)", peer_id, cause.value, message)

    def _presentation(self) -> bytes:
        encoded = b"" if self._certificate is None else encode_record(self._certificate)
        body = PresentCertificate(encoded, revocations_seen=self.revocations_held())
        return self._sealer.seal(body, self._clock())

    def _decide(self, admission: _Admission, frame: bytes) -> Certificate:
        connection = admission.connection
        try:
            certificate = judge_presentation(
                frame, connection.remote_public_key, self.membership, self._opener, self._clock()
            )
            if (
                connection.remote_peer_id not in self._admitted_peers()
                and len(self._admitted_peers()) >= self.config.peers_max
            ):
                raise Refused(RefusalCause.OVER_CAPACITY, f"{self.config.peers_max} peers already")
        except Refused as refusal:
            if refusal.cause is RefusalCause.REVOKED:
                self._revoked_keys.pop(connection.remote_public_key, None)
                self._revoked_keys[connection.remote_public_key] = trio.current_time()
                while len(self._revoked_keys) > _REVOKED_KEYS_MAX:
                    self._revoked_keys.popitem(last=False)
            self._refuse(admission, refusal.cause, str(refusal))
            raise
        admission.certificate = certificate
        admission.event().set()
        self.admitted_total += 1
        log.info(
            "admitted peer %s (%s, serial %d) at %s",
            connection.remote_peer_id,
            certificate.name,
            certificate.serial,
            connection.remote_addr,
        )
        if self.on_admitted is not None:
            seen = _peek_presentation(frame).revocations_seen
            self.on_admitted(connection, certificate, seen)
        self._retire_duplicates(connection.remote_peer_id)
        return certificate

    def _retire_duplicates(self, peer_id: str) -> None:
        live = [
            a
            for a in self._admissions.values()
            if a.certificate is not None
            and a.connection.remote_peer_id == peer_id
            and not a.connection.going_away
        ]
        if len(live) < 2 or self._host is None:
            return
        local = self._host.peer_id
        lower = min(local, peer_id)

        def dialled_by_lower(admission: _Admission) -> bool:
            dialer = local if admission.connection.is_initiator else peer_id
            return dialer == lower

        keep = min(live, key=lambda a: (not dialled_by_lower(a), a.since))
        for admission in live:
            # Same-direction twins are left alone: the other side may have
            # admitted them in another order, and only the direction rule is
            # one both sides agree on.
            if dialled_by_lower(admission) != dialled_by_lower(keep):
                self.duplicates_retired += 1
                log.info(
                    "retiring duplicate connection %r (keeping %r)",
                    admission.connection,
                    keep.connection,
                )
                admission.connection.go_away()
                if self._nursery is not None:
                    self._nursery.start_soon(self._close_when_drained, admission.connection)

    async def _close_when_drained(self, connection: Connection) -> None:
        with trio.move_on_after(self.config.duplicate_grace_s):
            while connection.open_streams and not connection.is_closed:
                await trio.sleep(0.05)
        await connection.aclose()

    def _refuse(self, admission: _Admission, cause: RefusalCause, message: str) -> None:
        if admission.refused is None:
            admission.refused = cause
            self._count(cause, admission.connection.remote_peer_id, message)
        admission.event().set()
        self._close_soon(admission.connection)

    def _close_soon(self, connection: Connection) -> None:
        if self._nursery is not None and not connection.is_closed:
            with contextlib.suppress(RuntimeError):  # the peer is shutting down
                self._nursery.start_soon(connection.aclose)

    # --- the exchange --------------------------------------------------------------

    async def present(self, connection: Connection) -> Certificate:
        """Dialer side: present ours, judge theirs; ``NotAdmitted`` (connection closed) if either fails."""
        admission = self._admission(connection)
        if admission.certificate is not None:
            return admission.certificate
        if admission.started:  # another task is presenting on this connection
            await self._wait_decided(admission, self.config.presentation_timeout_s)
            if admission.certificate is None:
                raise NotAdmitted(f"membership exchange with {connection.remote_peer_id} failed")
            return admission.certificate
        admission.started = True
        frame = b""
        try:
            with trio.fail_after(self.config.presentation_timeout_s):
                stream = await connection.open_stream([PROTOCOL_ID])
                try:
                    await send_frame(stream, self._presentation(), PRESENTATION_BYTES_MAX)
                    await stream.send_eof()
                    frame = await receive_frame(stream, PRESENTATION_BYTES_MAX)
                finally:
                    await stream.aclose()
        except (*_NETWORK_ERRORS, trio.TooSlowError) as error:
            if isinstance(error, (trio.BrokenResourceError, StreamEnded)):
                # The remote reset or hung up: it refused us; that is not our refusal.
                self.rejected_by_remote += 1
                admission.refused = RefusalCause.NO_CERTIFICATE
                admission.event().set()
                self._close_soon(connection)
            else:
                bad = isinstance(error, WireError) and not isinstance(error, TransportError)
                cause = RefusalCause.BAD_ENVELOPE if bad else RefusalCause.NO_CERTIFICATE
                self._refuse(admission, cause, f"membership exchange failed: {error}")
            raise NotAdmitted(
                f"{connection.remote_peer_id} did not admit us or present a certificate "
                f"({type(error).__name__}: {error})"
            ) from None
        try:
            return self._decide(admission, frame)
        except Refused as refusal:
            raise NotAdmitted(f"refused {connection.remote_peer_id}: {refusal}") from None

    async def _serve_presentation(self, stream: MuxedStream) -> None:
        """Listener side: judge the dialer's presentation, answer with ours if admitted."""
        admission = self._admission(stream.connection)
        if admission.started or admission.refused is not None:
            await stream.reset()
            return
        admission.started = True
        try:
            with trio.fail_after(self.config.presentation_timeout_s):
                frame = await receive_frame(stream, PRESENTATION_BYTES_MAX)
        except (*_NETWORK_ERRORS, trio.TooSlowError) as error:
            cause = (
                RefusalCause.BAD_ENVELOPE
                if isinstance(error, WireError) and not isinstance(error, TransportError)
                else RefusalCause.NO_CERTIFICATE
            )
            self._refuse(admission, cause, f"presentation unreadable: {error}")
            await stream.reset()
            return
        try:
            self._decide(admission, frame)
        except Refused:
            await stream.reset()
            return
        await send_frame(stream, self._presentation(), PRESENTATION_BYTES_MAX)
        await stream.send_eof()

    async def _wait_decided(self, admission: _Admission, timeout_s: float) -> None:
        if admission.certificate is None and admission.refused is None:
            with trio.move_on_after(timeout_s):
                await admission.event().wait()

    async def wait_admitted(self, connection: Connection) -> bool:
        """True once ``connection`` is admitted; False if refused, never presented, or too slow."""
        admission = self._admission(connection)
        if admission.certificate is not None:
            return True
        if not admission.started:
            return False
        await self._wait_decided(admission, self.config.presentation_timeout_s)
        return admission.certificate is not None

    # --- guarding handlers ---------------------------------------------------------

    def guard(self, handler: StreamHandler) -> StreamHandler:
        """``handler`` for admitted connections only; others get the stream reset."""

        async def guarded(stream: MuxedStream) -> None:
            if not await self.wait_admitted(stream.connection):
                self.streams_refused += 1
                log.info(
                    "reset %s stream from unadmitted peer %s",
                    stream.protocol,
                    stream.connection.remote_peer_id,
                )
                await stream.reset()
                return
            await handler(stream)

        return guarded

    def stream_filter(self, connection: Connection, protocol: str) -> bool:
        """The host's stream filter: which of our protocols ``connection`` may negotiate now.

        Unadmitted: the membership protocol only (and identify/ping when
        strangers are allowed), so a stranger cannot even learn which colony
        protocols we speak. While the presentation is in flight everything is
        offered and the guard makes the stream wait for the verdict (the
        listener may open a stream the moment it has admitted us, before our
        side has judged its answer).
        """
        admission = self._admissions.get(connection)
        if admission is not None and admission.certificate is not None:
            return True
        if admission is not None and admission.refused is not None:
            return False
        if protocol == PROTOCOL_ID:
            return True
        if protocol in _LIBP2P_PROTOCOLS and self.config.allow_strangers_identify_ping:
            return True
        return admission is not None and admission.started

    # --- the sweeper -----------------------------------------------------------------

    async def _sweeper(self) -> None:
        while True:
            with trio.move_on_after(self.config.sweep_interval_s):
                await self._wake.wait()
            self._wake = trio.Event()
            self.sweep()

    def sweep(self) -> None:
        """Cut connections that never presented in time, or whose certificate lapsed."""
        if self._host is None:
            return
        now = trio.current_time()
        wall = self._clock()
        limit = self.config.presentation_timeout_s
        if self.config.allow_strangers_identify_ping:
            limit = max(limit, self.config.strangers_grace_s)
        for connection in self._host.connections:
            admission = self._admission(connection)
            if admission.refused is not None:
                self._close_soon(connection)
            elif admission.certificate is None:
                if now - admission.since > limit and not admission.started:
                    self._refuse(admission, RefusalCause.NO_CERTIFICATE, "never presented")
            else:
                self._recheck(admission, wall)
        for connection in [c for c in self._admissions if c.is_closed]:
            del self._admissions[connection]

    def _recheck(self, admission: _Admission, wall: float) -> None:
        certificate = admission.certificate
        if certificate is None:
            return
        if self.membership.is_revoked(certificate.serial):
            self._revoked_keys[certificate.member_key] = trio.current_time()
            reason = "revoked"
        elif not certificate.not_before <= wall < certificate.not_after:
            reason = "expired"
        else:
            return
        self.cut_later[reason] += 1
        admission.certificate = None
        admission.refused = RefusalCause.REVOKED if reason == "revoked" else RefusalCause.EXPIRED
        log.warning(
            "cutting peer %s (%s): certificate %d %s",
            admission.connection.remote_peer_id,
            certificate.name,
            certificate.serial,
            reason,
        )
        self._close_soon(admission.connection)

    def statistics(self) -> dict[str, Any]:
        return {
            "admitted_total": self.admitted_total,
            "admitted_now": len(self.admitted_connections()),
            "duplicates_retired": self.duplicates_retired,
            "refused": dict(self.refused),
            "cut_later": dict(self.cut_later),
            "streams_refused": self.streams_refused,
            "rejected_by_remote": self.rejected_by_remote,
            "pending": sum(1 for a in self._admissions.values() if a.certificate is None),
        }
