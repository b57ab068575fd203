// js-libp2p interop peer for the colonymesh transport tests.
//   node peer.mjs listen            -> prints {"event":"listening",...}, then reports
//                                      identify/ping of whoever dials it
//   node peer.mjs dial MULTIADDR    -> dials, pings, waits for identify, prints, exits
// Every report is one JSON object per line on stdout.
if (typeof Promise.withResolvers !== 'function') {
  // Node 20 lacks it; js-libp2p 3 needs it.
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { multiaddr } = await import('@multiformats/multiaddr')

const report = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const [mode, target] = process.argv.slice(2)

const node = await createLibp2p({
  addresses: { listen: mode === 'listen' ? ['/ip4/127.0.0.1/tcp/0'] : [] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() }
})

const identified = new Promise((resolve) => {
  node.addEventListener('peer:identify', (evt) => {
    const d = evt.detail
    report({
      event: 'identify',
      peer: d.peerId.toString(),
      protocols: d.protocols,
      agentVersion: d.agentVersion,
      listenAddrs: d.listenAddrs.map((a) => a.toString())
    })
    resolve(d)
  })
})

if (mode === 'listen') {
  node.addEventListener('connection:open', async (evt) => {
    const conn = evt.detail
    report({ event: 'connected', peer: conn.remotePeer.toString() })
    try {
      await identified
      const rtt = await node.services.ping.ping(conn.remotePeer)
      report({ event: 'ping', peer: conn.remotePeer.toString(), rtt })
    } catch (err) {
      report({ event: 'error', message: String(err) })
    }
  })
  report({ event: 'listening', peer: node.peerId.toString(), addrs: node.getMultiaddrs().map((a) => a.toString()) })
  process.stdin.resume()
  process.stdin.on('end', async () => { await node.stop(); process.exit(0) })
} else if (mode === 'dial') {
  try {
    const ma = multiaddr(target)
    const rtt = await node.services.ping.ping(ma)
    report({ event: 'ping', peer: target, rtt })
    await identified
    await node.stop()
    process.exit(0)
  } catch (err) {
    report({ event: 'error', message: String(err && err.stack || err) })
    process.exit(1)
  }
} else {
  console.error('usage: peer.mjs listen | dial MULTIADDR')
  process.exit(2)
}
