"""py-libp2p 0.8.1 interop peer for the colonymesh transport tests.

Runs in the separate interop venv (``setup.sh``), never in the project's:
    python py_peer.py listen          -> {"event": "listening", ...}; then identifies
                                         and pings every peer that connects
    python py_peer.py dial MULTIADDR  -> connects, identifies, pings, exits
Security is restricted to Noise and muxing to Yamux, so success proves both.
Reports are JSON lines on stdout.
"""

import json
import sys

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_pair
from libp2p.host.ping import PingService
from libp2p.identity.identify.identify import ID as IDENTIFY_ID
from libp2p.identity.identify.identify import parse_identify_response
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux


def report(**fields):
    print(json.dumps(fields), flush=True)


async def identify_and_ping(host, peer_id):
    stream = await host.new_stream(peer_id, [IDENTIFY_ID])
    data = b""
    while True:
        try:
            chunk = await stream.read(65536)
        except StreamEOF:
            break
        if not chunk:
            break
        data += chunk
    await stream.close()
    message = parse_identify_response(data)
    report(
        event="identify",
        peer=str(peer_id),
        protocols=list(message.protocols),
        agentVersion=message.agent_version,
    )
    rtts = await PingService(host).ping(peer_id, ping_amt=3)
    report(event="ping", peer=str(peer_id), rtts=rtts)


async def main(mode, target):
    key_pair = create_new_key_pair()
    host = new_host(
        key_pair=key_pair,
        sec_opt={
            NOISE_ID: NoiseTransport(key_pair, noise_privkey=create_x25519_pair().private_key)
        },
        muxer_opt={YAMUX_ID: Yamux},
    )
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")] if mode == "listen" else []
    async with host.run(listen_addrs=listen):
        if mode == "dial":
            info = info_from_p2p_addr(multiaddr.Multiaddr(target))
            await host.connect(info)
            await identify_and_ping(host, info.peer_id)
            return
        report(event="listening", peer=str(host.get_id()), addrs=[str(a) for a in host.get_addrs()])
        served = set()
        while True:  # until the test closes our stdin / kills us
            for peer_id in list(host.get_network().connections):
                if peer_id not in served:
                    served.add(peer_id)
                    report(event="connected", peer=str(peer_id))
                    try:
                        await identify_and_ping(host, peer_id)
                    except Exception as error:  # report, keep serving
                        report(event="error", message=repr(error))
            await trio.sleep(0.05)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    sys.stdout.flush()
    sys.exit(0)
