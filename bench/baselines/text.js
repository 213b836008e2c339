// Baseline 3: the old viewers' way with CSV and JSON — the whole file as one string
// (`file.text()`), then `JSON.parse` (pandas `orient="records"`) or splitting into lines.
import { start, distinct, extent } from './common.js'

function fromRecords(records) {
  const n = records.length
  const step = new Int32Array(n), layer = new Int32Array(n), position = new Int32Array(n)
  const variant = new Int32Array(n)
  const metrics = { l2_distance: new Float32Array(n), cosine_distance: new Float32Array(n) }
  const names = [], index = new Map()
  for (let i = 0; i < n; i++) {
    const r = records[i]
    step[i] = r.generation_step
    layer[i] = r.layer
    position[i] = r.token_position
    let c = index.get(r.variant)
    if (c === undefined) { c = names.length; index.set(r.variant, c); names.push(r.variant) }
    variant[i] = c
    metrics.l2_distance[i] = r.l2_distance ?? NaN
    metrics.cosine_distance[i] = r.cosine_distance ?? NaN
  }
  return { rows: n, step, layer, position, variant, variants: names, metrics, steps: distinct(step), nLayers: extent(layer), nPositions: extent(position) }
}

/** Splits CSV text into records of the needed columns (RFC 4180 quotes: token text may hold commas, quotes and newlines). */
function parseCsv(text) {
  const records = []
  let header = null
  let fields = []
  let field = ''
  let i = 0
  const n = text.length
  while (i < n) {
    const ch = text.charCodeAt(i)
    if (ch === 34 /* " */ && field === '') {
      let j = i + 1
      let s = ''
      for (;;) {
        const q = text.indexOf('"', j)
        if (q < 0) throw new Error('unterminated quote')
        s += text.slice(j, q)
        if (text.charCodeAt(q + 1) === 34) { s += '"'; j = q + 2 } else { i = q + 1; break }
      }
      field = s
      continue
    }
    if (ch === 44 /* , */) { fields.push(field); field = ''; i++; continue }
    if (ch === 10 || ch === 13) {
      fields.push(field); field = ''
      if (ch === 13 && text.charCodeAt(i + 1) === 10) i++
      i++
      if (!header) header = fields
      else if (fields.length > 1) records.push(fields)
      fields = []
      continue
    }
    // Plain field: up to the next comma or line end.
    let j = i
    while (j < n) { const c = text.charCodeAt(j); if (c === 44 || c === 10 || c === 13) break; j++ }
    field += text.slice(i, j)
    i = j
  }
  if (field !== '' || fields.length) { fields.push(field); if (header) records.push(fields) }
  if (!header) throw new Error('empty file (the browser returned no text)')
  const col = (name) => { const k = header.indexOf(name); if (k < 0) throw new Error(`missing column ${name}`); return k }
  const s = col('generation_step'), l = col('layer'), p = col('token_position'), v = col('variant')
  const m2 = col('l2_distance'), mc = header.indexOf('cosine_distance')
  return records.map((f) => ({
    generation_step: +f[s], layer: +f[l], token_position: +f[p], variant: f[v],
    l2_distance: f[m2] === '' ? NaN : +f[m2], cosine_distance: mc < 0 || f[mc] === '' ? NaN : +f[mc],
  }))
}

async function load(file) {
  const text = await file.text()
  if (text.length === 0) throw new Error(`file.text() returned an empty string for a ${file.size}-byte file`)
  const records = file.name.endsWith('.csv') ? parseCsv(text) : JSON.parse(text)
  if (!Array.isArray(records)) throw new Error('expected an array of records')
  return fromRecords(records)
}

start('file.text() + JSON.parse / CSV lines', load)
