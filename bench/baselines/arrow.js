// Baseline 1: the stack the old viewer loaded — parquet-wasm decodes the Parquet file to Arrow
// IPC, Apache Arrow JS reads it into a Table (as both libraries' READMEs show), then plain JS
// scans the columns.
import initWasm, { readParquet, wasmMemory } from 'parquet-wasm/esm/parquet_wasm.js'
import { tableFromIPC } from 'apache-arrow'
import { start, distinct, extent, int64Low } from './common.js'

const COLUMNS = ['generation_step', 'layer', 'token_position', 'variant', 'l2_distance', 'cosine_distance']


/** An integer column as Int32Array (int64 via its low words). */
function ints(table, name) {
  const v = table.getChild(name)
  if (!v) throw new Error(`missing column ${name}`)
  const a = v.toArray()
  return a instanceof BigInt64Array ? int64Low(a) : Int32Array.from(a)
}

/** A dictionary (or plain string) column as codes into one list of names. */
function codes(table, name) {
  const v = table.getChild(name)
  if (!v) throw new Error(`missing column ${name}`)
  const names = []
  const index = new Map()
  const out = new Int32Array(v.length)
  let offset = 0
  for (const d of v.data) {
    if (d.dictionary) {
      const dict = d.dictionary.toArray()
      const map = dict.map((s) => {
        if (!index.has(s)) { index.set(s, names.length); names.push(s) }
        return index.get(s)
      })
      const idx = d.values
      for (let i = 0; i < d.length; i++) out[offset + i] = map[idx[i]]
    } else {
      throw new Error(`${name}: expected a dictionary column`)
    }
    offset += d.length
  }
  return { names, out }
}

async function load(file) {
  const bytes = new Uint8Array(await file.arrayBuffer())
  // Only the columns the view needs (parquet-wasm's projection), like our reader.
  const table = tableFromIPC(readParquet(bytes, { columns: COLUMNS }).intoIPCStream())
  const step = ints(table, 'generation_step')
  const layer = ints(table, 'layer')
  const position = ints(table, 'token_position')
  const variant = codes(table, 'variant')
  const metrics = {}
  for (const m of ['l2_distance', 'cosine_distance']) {
    const v = table.getChild(m)
    if (v) metrics[m] = v.toArray()
  }
  return {
    rows: table.numRows, step, layer, position, variant: variant.out, variants: variant.names, metrics,
    steps: distinct(step), nLayers: extent(layer), nPositions: extent(position),
  }
}

// The page is ready once the wasm module is instantiated.
await initWasm(new URL('./parquet_wasm_bg.wasm', import.meta.url))
start('parquet-wasm + Apache Arrow', load)
window.benchPage.wasmBytes = () => wasmMemory().buffer.byteLength
