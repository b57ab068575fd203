"""py-libp2p 0.8.1 figures for bench/transport.py (run in the interop venv).

    /work/interop-venv/bin/python py_bench.py [--quick]

Same shape as colonymesh's measurement: the server is a second process
(TCP + Noise + Yamux only), the client measures 32-byte echo round trips,
one-stream bulk into a sink that answers with the byte count after EOF, and
connect time. Last stdout line: one JSON object.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_pair
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

ECHO = "/bench/echo/1.0.0"
SINK = "/bench/sink/1.0.0"
CHUNK = 256 * 1024


def make_host():
    key_pair = create_new_key_pair()
    return new_host(
        key_pair=key_pair,
        sec_opt={
            NOISE_ID: NoiseTransport(key_pair, noise_privkey=create_x25519_pair().private_key)
        },
        muxer_opt={YAMUX_ID: Yamux},
    )


async def echo(stream):
    try:
        while True:
            data = await stream.read(65536)
            if not data:
                break
            await stream.write(data)
    except StreamEOF:
        pass
    await stream.close()


async def sink(stream):
    total = 0
    try:
        while True:
            data = await stream.read(CHUNK)
            if not data:
                break
            total += len(data)
    except StreamEOF:
        pass
    await stream.write(total.to_bytes(8, "big"))
    await stream.close()


async def serve():
    host = make_host()
    host.set_stream_handler(ECHO, echo)
    host.set_stream_handler(SINK, sink)
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        print(str(host.get_addrs()[0]), flush=True)
        await trio.sleep_forever()


async def read_exactly(stream, count):
    data = b""
    while len(data) < count:
        data += await stream.read(count - len(data))
    return data


async def client(address, quick):
    host = make_host()
    info = info_from_p2p_addr(multiaddr.Multiaddr(address))
    figures = {}
    async with host.run(listen_addrs=[]):
        connects = []
        for _ in range(3 if quick else 5):
            started = time.perf_counter()
            await host.connect(info)
            connects.append(time.perf_counter() - started)
            await host.disconnect(info.peer_id)
            await trio.sleep(0.05)
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [ECHO])
        message = b"m" * 32
        rtts = []
        for index in range(100 + (500 if quick else 2000)):
            started = time.perf_counter()
            await stream.write(message)
            await read_exactly(stream, 32)
            if index >= 100:
                rtts.append(time.perf_counter() - started)
        rtts.sort()
        total = (10 if quick else 30) * 1000 * 1000
        stream = await host.new_stream(info.peer_id, [SINK])
        chunk = os.urandom(CHUNK)
        started = time.perf_counter()
        sent = 0
        while sent < total:
            await stream.write(chunk)
            sent += len(chunk)
        await stream.close()
        counted = int.from_bytes(await read_exactly(stream, 8), "big")
        elapsed = time.perf_counter() - started
        if counted != sent:
            raise RuntimeError(f"sink counted {counted} of {sent}")
        figures = {
            "rtt_p50_us": rtts[len(rtts) // 2] * 1e6,
            "rtt_p99_us": rtts[int(len(rtts) * 0.99)] * 1e6,
            "bulk_mb_s": sent / elapsed / 1e6,
            "connect_ms": statistics.median(connects) * 1e3,
        }
    return figures


def main():
    if sys.argv[1:2] == ["serve"]:
        trio.run(serve)
        return
    quick = "--quick" in sys.argv
    server = subprocess.Popen([sys.executable, __file__, "serve"], stdout=subprocess.PIPE)
    try:
        address = server.stdout.readline().decode().strip()
        figures = trio.run(client, address, quick)
    finally:
        server.terminate()
        server.wait()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
