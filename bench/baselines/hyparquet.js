// Baseline 2: hyparquet (pure JS) with hyparquet-compressors for zstd, reading only the needed
// columns column chunk by column chunk (`onChunk`), then plain JS scans them.
import { parquetMetadataAsync, parquetRead } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import { start, distinct, extent } from './common.js'

const COLUMNS = ['generation_step', 'layer', 'token_position', 'variant', 'l2_distance', 'cosine_distance']

async function load(file) {
  const buffer = await file.arrayBuffer()
  const metadata = await parquetMetadataAsync(buffer)
  const rows = Number(metadata.num_rows)
  const have = new Set(metadata.schema.map((s) => s.name))
  for (const c of COLUMNS.slice(0, 5)) if (!have.has(c)) throw new Error(`missing column ${c}`)
  const step = new Int32Array(rows), layer = new Int32Array(rows), position = new Int32Array(rows)
  const variant = new Int32Array(rows)
  const metrics = { l2_distance: new Float32Array(rows) }
  if (have.has('cosine_distance')) metrics.cosine_distance = new Float32Array(rows)
  const names = [], index = new Map()
  const ints = { generation_step: step, layer, token_position: position }
  await parquetRead({
    file: buffer, metadata, compressors, columns: COLUMNS.filter((c) => have.has(c)),
    onChunk({ columnName, columnData, rowStart }) {
      const n = columnData.length
      if (columnName in ints) {
        const out = ints[columnName]
        for (let i = 0; i < n; i++) out[rowStart + i] = Number(columnData[i])
      } else if (columnName === 'variant') {
        for (let i = 0; i < n; i++) {
          const s = columnData[i]
          let c = index.get(s)
          if (c === undefined) { c = names.length; index.set(s, c); names.push(s) }
          variant[rowStart + i] = c
        }
      } else {
        metrics[columnName].set(columnData, rowStart)
      }
    },
  })
  return {
    rows, step, layer, position, variant, variants: names, metrics,
    steps: distinct(step), nLayers: extent(layer), nPositions: extent(position),
  }
}

start('hyparquet', load)
