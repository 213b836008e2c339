// Shared by the baseline pages: the page shell (file input, selectors, status), the same
// layers × positions heatmap our viewer draws (per-row maximum normalisation with position 0 left
// out of the maximum, 21 heat levels from white to red, one putImageData), and the marks the
// benchmark driver reads. Each baseline supplies only its reader: `load(file)` resolving to
// columns (see `paint`).

const statusEl = document.getElementById('status')
const input = document.getElementById('file')
const canvas = document.getElementById('heatmap')
const selects = {
  step: document.getElementById('step'),
  variant: document.getElementById('variant'),
  metric: document.getElementById('metric'),
}

function setStatus(state, text) {
  statusEl.dataset.state = state
  statusEl.textContent = text
}

// 21 discrete levels, white (0) to red (1), as the original viewer coloured its cells.
const LEVELS = 21
const palette = new Uint32Array(LEVELS + 1)
for (let i = 0; i < LEVELS; i++) {
  const t = i / (LEVELS - 1)
  const gb = Math.round(255 * (1 - t))
  palette[i] = (255 << 24) | (gb << 16) | (gb << 8) | 255 // ABGR little-endian: R=255, G=B=gb
}
palette[LEVELS] = (255 << 24) | (0xcc << 16) | (0xcc << 8) | 0xcc // no data: grey

let data = null

/**
 * Paints one view. `cols` holds typed arrays of equal length: `step`, `layer`, `position`
 * (Int32Array-like), `variant` (codes into `cols.variants`), and one Float32Array-like per metric in
 * `cols.metrics`. Scans every row, as a page holding the decoded table does.
 */
function paint(cols, step, variantName, metric) {
  const vcode = cols.variants.indexOf(variantName)
  const values = cols.metrics[metric]
  const { nLayers, nPositions } = cols
  const grid = new Float32Array(nLayers * nPositions).fill(NaN)
  const st = cols.step, ly = cols.layer, ps = cols.position, vr = cols.variant
  const n = values.length
  for (let i = 0; i < n; i++) {
    if (st[i] === step && vr[i] === vcode) grid[ly[i] * nPositions + ps[i]] = values[i]
  }
  const ctx = canvas.getContext('2d')
  if (canvas.width !== nPositions || canvas.height !== nLayers) {
    canvas.width = nPositions
    canvas.height = nLayers
  }
  const image = ctx.createImageData(nPositions, nLayers)
  const pixels = new Uint32Array(image.data.buffer)
  for (let l = 0; l < nLayers; l++) {
    const row = l * nPositions
    let max = 0
    for (let p = 1; p < nPositions; p++) {
      const v = grid[row + p]
      if (v > max) max = v
    }
    for (let p = 0; p < nPositions; p++) {
      const v = grid[row + p]
      if (v !== v) pixels[row + p] = palette[LEVELS]
      else {
        const t = max > 0 ? Math.min(v / max, 1) : 0
        pixels[row + p] = palette[Math.round(t * (LEVELS - 1))]
      }
    }
  }
  ctx.putImageData(image, 0, 0)
}

function fillSelect(sel, values, labels) {
  sel.replaceChildren(...values.map((v, i) => {
    const o = document.createElement('option')
    o.value = String(v)
    o.textContent = labels ? labels[i] : String(v)
    return o
  }))
}

function currentView() {
  return { step: Number(selects.step.value), variant: selects.variant.value, metric: selects.metric.value }
}

function show(view) {
  performance.mark('mi-view-start')
  paint(data, view.step, view.variant, view.metric)
  performance.mark('mi-painted')
}

/** Wires the page to a reader: `load(file)` → columns (see `paint`), plus `steps`. */
export function start(name, load) {
  setStatus('empty', `${name}: choose a file`)
  input.addEventListener('change', async () => {
    const file = input.files[0]
    if (!file) return
    performance.mark('mi-load-start')
    setStatus('loading', `reading ${file.name}…`)
    try {
      const cols = await load(file)
      performance.mark('mi-decoded')
      data = cols
      fillSelect(selects.step, cols.steps)
      fillSelect(selects.variant, cols.variants)
      fillSelect(selects.metric, Object.keys(cols.metrics))
      selects.step.value = String(cols.steps[0])
      selects.variant.value = cols.variants.includes('Full') ? 'Full' : cols.variants[0]
      selects.metric.value = 'l2_distance'
      show(currentView())
      setStatus('ready', `${file.name}: ${cols.rows} rows`)
    } catch (e) {
      console.error(e)
      performance.mark('mi-error')
      setStatus('error', `${file.name}: ${e && e.message ? e.message : e}`)
    }
  })
  for (const sel of Object.values(selects)) sel.addEventListener('change', () => show(currentView()))
  // The driver's hook: the same as choosing in the selectors.
  window.benchPage = {
    setView(view) {
      for (const [k, v] of Object.entries(view)) selects[k].value = String(v)
      selects.step.dispatchEvent(new Event('change'))
    },
    wasmBytes: () => 0,
  }
  performance.mark('mi-ready')
}

/** Distinct values of a small-valued Int32Array-like, sorted. */
export function distinct(values) {
  const seen = new Set()
  for (let i = 0; i < values.length; i++) seen.add(values[i])
  return [...seen].sort((a, b) => a - b)
}

/** Largest value + 1 (grid extent) of an Int32Array-like. */
export function extent(values) {
  let max = -1
  for (let i = 0; i < values.length; i++) if (values[i] > max) max = values[i]
  return max + 1
}

/** The low 32 bits of each value of a BigInt64Array as an Int32Array (no copy needed beyond one pass). */
export function int64Low(big) {
  const words = new Int32Array(big.buffer, big.byteOffset, big.length * 2)
  const out = new Int32Array(big.length)
  for (let i = 0; i < out.length; i++) out[i] = words[2 * i]
  return out
}
