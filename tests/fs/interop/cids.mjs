// Print the IPFS CID of each path given on the command line, one per line,
// using the reference JS UnixFS importer with the options colonymesh mirrors:
// CIDv1, raw leaves, 256 KiB fixed-size chunks, balanced layout (174 links).
// Directories are walked recursively, hidden entries included, symlinks stored
// as UnixFS symlinks (not followed), like `ipfs add -r --hidden`.
// CHUNK_BYTES and MAX_LINKS in the environment override the chunk size and
// fan-out, so tests can build deep DAGs from small inputs.
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { MemoryBlockstore } from 'blockstore-core/memory'
import * as fs from 'node:fs'
import * as path from 'node:path'

function * walk (abs, rel) {
  const st = fs.lstatSync(abs)
  if (st.isSymbolicLink()) {
    yield { path: rel, link: fs.readlinkSync(abs) }
  } else if (st.isDirectory()) {
    yield { path: rel }
    for (const name of fs.readdirSync(abs)) {
      yield * walk(path.join(abs, name), rel + '/' + name)
    }
  } else {
    yield { path: rel, content: fs.createReadStream(abs) }
  }
}

const options = {
  cidVersion: 1,
  rawLeaves: true,
  chunker: fixedSize({ chunkSize: Number(process.env.CHUNK_BYTES ?? 262144) }),
  layout: balanced({ maxChildrenPerNode: Number(process.env.MAX_LINKS ?? 174) }),
  reduceSingleLeafToSelf: true,
  wrapWithDirectory: false
}

for (const arg of process.argv.slice(2)) {
  const abs = path.resolve(arg)
  const name = path.basename(abs)
  let root
  for await (const entry of importer(walk(abs, name), new MemoryBlockstore(), options)) {
    if (entry.path === name) root = entry
  }
  if (root === undefined) throw new Error('no root for ' + arg)
  console.log(root.cid.toString())
}
