// The benchmark driver behind `cargo xtask bench`: generates (or reuses) the data files, builds
// the baseline pages, serves everything on 127.0.0.1, drives one headless Chromium through
// puppeteer-core (fresh browser context per run, readers alternating), times the CLI against the
// pandas recipe, writes bench/data/results-*.json and rewrites BENCHMARKS.md (see report.mjs).
//
//   node bench/run.mjs [--quick] [--no-cli] [--only=FILE_ID,...] [--readers=ours,arrow,...]
//
// Needs: `npm ci` in bench/, `cargo xtask dist` (our page in dist/), the bench-synth generator
// (bench/synth) or the CLI's `generate`, python3 with pandas + pyarrow. `cargo xtask bench` does
// all of that first.

import { spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'
import crypto from 'node:crypto'
import * as esbuild from 'esbuild'
import puppeteer from 'puppeteer-core'
import { writeReport } from './report.mjs'

const BENCH = import.meta.dirname
const ROOT = path.resolve(BENCH, '..')
const DATA = path.join(BENCH, 'data')
const BUILD = path.join(DATA, 'build')
const REAL = process.env.MASK_IMPACT_REAL_FILE ?? path.resolve(ROOT, '../shared/fixtures/real/image_question_hair.parquet')
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'

const argv = process.argv.slice(2)
const flag = (name) => argv.includes(`--${name}`)
const option = (name) => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
const QUICK = flag('quick')
const ONLY = option('only')?.split(',')
const ONLY_READERS = option('readers')?.split(',')
const LOAD_TIMEOUT_MS = 240_000

function log(...a) { console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a) }

// ---------------------------------------------------------------------------------------------
// Data

/** Synthetic data sets: [steps, layers, positions, heads, image grid side, seed]. */
const SYNTH = QUICK ? [
  { id: 'small', label: 'synthetic, 5 steps × 36 layers × 1053 positions × 2 variants', params: [5, 36, 1053, 0, 32, 1], formats: ['parquet', 'csv', 'json'] },
  { id: 'heads34-small', label: 'synthetic, 1 step × 36 layers × 1053 positions × 34 variants', params: [1, 36, 1053, 32, 32, 1], formats: ['parquet'] },
] : [
  { id: 'seed', label: 'seed scale: 50 steps × 36 layers × 1053 positions × 2 variants', params: [50, 36, 1053, 0, 32, 1], formats: ['parquet', 'csv', 'json'] },
  { id: 'text20', label: 'CSV / JSON under the browser\'s one-string limit: 20 steps × 36 layers × 1053 positions × 2 variants', params: [20, 36, 1053, 0, 32, 1], formats: ['csv', 'json'], runs: 3 },
  { id: 'heads34', label: 'like the real file: 2 steps × 36 layers × 1053 positions × 34 variants', params: [2, 36, 1053, 32, 32, 1], formats: ['parquet'] },
  { id: 'stress', label: 'stress: 400 steps × 36 layers × 1053 positions × 2 variants', params: [400, 36, 1053, 0, 32, 1], formats: ['parquet'], runs: 1 },
]

/** A short hash of the generator's source, so that a changed generator regenerates the cache. */
function generatorVersion() {
  const h = crypto.createHash('sha256')
  for (const f of ['src/synth.rs', 'bench/recipe.py', 'bench/synth/src/main.rs']) {
    const p = path.join(ROOT, f)
    if (fs.existsSync(p)) h.update(fs.readFileSync(p))
  }
  return h.digest('hex').slice(0, 10)
}

function run(cmd, args, opts = {}) {
  log('$', cmd, ...args)
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], ...opts })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`)
}

function synthBinary() {
  const p = process.env.BENCH_SYNTH ?? path.join(ROOT, 'target/bench-synth/release/bench-synth')
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run \`cargo xtask bench\` (it builds bench/synth)`)
  return p
}

/** Generates the files of one synthetic data set unless cached; returns them. */
function ensureSynth(set) {
  fs.mkdirSync(DATA, { recursive: true })
  const [steps, layers, positions, heads, grid, seed] = set.params
  const stem = path.join(DATA, `synth-s${steps}-l${layers}-p${positions}-h${heads}-g${grid}-seed${seed}-${generatorVersion()}`)
  // Only the formats asked for (--only) are generated: the seed CSV and JSON take minutes.
  const missing = set.formats.filter((f) => !fs.existsSync(`${stem}.${f}`) && (!ONLY || ONLY.includes(`${set.id}.${f}`)))
  if (missing.length) {
    const raw = `${stem}.raw.parquet`
    if (!fs.existsSync(raw)) {
      run(synthBinary(), [...set.params.map(String), `${raw}.tmp`])
      fs.renameSync(`${raw}.tmp`, raw)
    }
    run('python3', [path.join(BENCH, 'recipe.py'), raw, stem, ...missing])
  }
  const rows = steps * layers * positions * (2 + heads)
  return set.formats.filter((f) => fs.existsSync(`${stem}.${f}`)).map((format) => ({
    id: `${set.id}.${format}`, dataset: set.id, label: set.label, format, path: `${stem}.${format}`,
    rows, bytes: fs.statSync(`${stem}.${format}`).size, runs: set.runs,
  }))
}

function parquetRows(p) {
  const r = spawnSync('python3', ['-c', 'import sys, pyarrow.parquet as pq; print(pq.ParquetFile(sys.argv[1]).metadata.num_rows)', p], { encoding: 'utf8' })
  return r.status === 0 ? Number(r.stdout.trim()) : null
}

// ---------------------------------------------------------------------------------------------
// Baseline pages

async function buildBaselines() {
  fs.mkdirSync(BUILD, { recursive: true })
  await esbuild.build({
    entryPoints: ['arrow', 'hyparquet', 'text'].map((n) => path.join(BENCH, 'baselines', `${n}.js`)),
    bundle: true, minify: true, format: 'esm', target: 'es2022', outdir: BUILD, logLevel: 'warning',
  })
  fs.copyFileSync(path.join(BENCH, 'node_modules/parquet-wasm/esm/parquet_wasm_bg.wasm'), path.join(BUILD, 'parquet_wasm_bg.wasm'))
}

// ---------------------------------------------------------------------------------------------
// Static server (records what each page fetched, for "bytes shipped")

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon' }
const MOUNTS = [
  ['/ours/', () => path.join(DATA, 'dist-snapshot')],
  ['/baselines/build/', () => BUILD],
  ['/baselines/', () => path.join(BENCH, 'baselines')],
]
let served = []

function startServer() {
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x')
    const mount = MOUNTS.find(([prefix]) => url.pathname.startsWith(prefix))
    let file = mount && path.join(mount[1](), decodeURIComponent(url.pathname.slice(mount[0].length)))
    if (file && fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html')
    if (!file || !fs.existsSync(file)) { res.writeHead(404); res.end('not found'); return }
    served.push(file)
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-store' })
    fs.createReadStream(file).pipe(res)
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)))
}

/** Raw, gzip (-9) and brotli (q11) sizes of the JS and wasm files among `files`. */
function shippedBytes(files) {
  const out = { files: [], js: { raw: 0, gzip: 0, brotli: 0 }, wasm: { raw: 0, gzip: 0, brotli: 0 } }
  for (const f of [...new Set(files)]) {
    const ext = path.extname(f)
    const kind = ext === '.wasm' ? 'wasm' : (ext === '.js' || ext === '.mjs') ? 'js' : null
    if (!kind) continue
    const body = fs.readFileSync(f)
    const sizes = {
      raw: body.length,
      gzip: zlib.gzipSync(body, { level: 9 }).length,
      brotli: zlib.brotliCompressSync(body, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length } }).length,
    }
    out.files.push({ file: path.relative(ROOT, f), kind, ...sizes })
    for (const k of ['raw', 'gzip', 'brotli']) out[kind][k] += sizes[k]
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Readers

/** Installed in every page before its scripts run: times the file input's change event, the
 *  page API's appearance, the status reaching ready/error, and the next `mi-painted` mark. */
const INSTRUMENT = () => {
  const b = (window.__bench = { changeAt: null, doneAt: null, state: null, statusText: null, readyAt: null })
  document.addEventListener('change', (e) => {
    if (e.target && e.target.type === 'file' && b.changeAt === null) b.changeAt = performance.now()
  }, true)
  for (const name of ['maskImpact', 'benchPage']) {
    let value
    Object.defineProperty(window, name, {
      configurable: true, enumerable: true,
      get() { return value },
      set(v) { value = v; if (b.readyAt === null) b.readyAt = performance.now() },
    })
  }
  const watch = () => {
    const s = document.getElementById('status')
    if (!s) return
    new MutationObserver(() => {
      const st = s.dataset.state
      if (b.changeAt !== null && b.doneAt === null && (st === 'ready' || st === 'error')) {
        b.doneAt = performance.now(); b.state = st; b.statusText = s.textContent
      }
    }).observe(s, { attributes: true, attributeFilter: ['data-state'] })
  }
  // Every wasm memory a global creates or instantiates (exported or imported), in the page and,
  // through a one-line wrapper script around each classic worker, in its workers.
  const wasmHook = (g) => {
    const memories = new Set()
    const grab = (instance) => {
      for (const v of Object.values(instance?.exports ?? {})) if (v instanceof g.WebAssembly.Memory) memories.add(v)
      return instance
    }
    const W = g.WebAssembly
    const instantiate = W.instantiate
    W.instantiate = async function (...a) { const r = await instantiate.apply(this, a); grab(r.instance ?? r); return r }
    const streaming = W.instantiateStreaming
    if (streaming) W.instantiateStreaming = async function (...a) { const r = await streaming.apply(this, a); grab(r.instance); return r }
    const Memory = W.Memory
    W.Instance = new Proxy(W.Instance, { construct(t, a, n) { return grab(Reflect.construct(t, a, n)) } })
    W.Memory = new Proxy(Memory, { construct(t, a, n) { const m = Reflect.construct(t, a, n); memories.add(m); return m } })
    g.__benchWasmBytes = () => [...memories].reduce((s, m) => s + m.buffer.byteLength, 0)
  }
  wasmHook(window)
  b.wasmBytes = () => window.__benchWasmBytes()
  const hookSource = `(${wasmHook.toString()})(self);\n`
  const NativeWorker = window.Worker
  window.Worker = class extends NativeWorker {
    constructor(url, options) {
      if (!options || options.type !== 'module') {
        const abs = new URL(url, location.href).href
        url = URL.createObjectURL(new Blob([hookSource, `importScripts(${JSON.stringify(abs)});\n`], { type: 'text/javascript' }))
      }
      super(url, options)
    }
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', watch)
  else watch()
  /** Runs `fn` (a view change) and resolves with the ms to the next `mi-painted` mark. */
  b.timeNextPaint = (fn, timeoutMs) => new Promise((resolve, reject) => {
    const t0 = performance.now()
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if ((e.name === 'mi-painted' || e.name === 'mi-view-painted') && e.startTime >= t0) { obs.disconnect(); clearTimeout(timer); resolve(e.startTime - t0); return }
      }
    })
    obs.observe({ type: 'mark' })
    const timer = setTimeout(() => { obs.disconnect(); reject(new Error('no mi-painted / mi-view-painted mark after the view change')) }, timeoutMs)
    fn()
  })
}

const READERS = {
  ours: {
    name: 'mask-impact (ours)', url: '/ours/index.html', formats: ['parquet', 'csv', 'json'],
    /** Changes one key of the view state through the URL hash (the page contract). */
    async switchView(page, key, value) {
      return page.evaluate((key, value) => window.__bench.timeNextPaint(() => {
        const pairs = location.hash.slice(1).split('&').filter(Boolean).map((kv) => kv.split('='))
        const i = pairs.findIndex(([k]) => k === key)
        if (i >= 0) pairs[i][1] = encodeURIComponent(value); else pairs.push([key, encodeURIComponent(value)])
        location.hash = pairs.map((kv) => kv.join('=')).join('&')
      }, 10_000), key, value)
    },
    metricNames: { l2: 'l2_distance', cosine: 'cosine_distance' },
  },
  arrow: {
    name: 'parquet-wasm + Apache Arrow', url: '/baselines/arrow.html', formats: ['parquet'],
    switchView: baselineSwitch, metricNames: { l2: 'l2_distance', cosine: 'cosine_distance' },
  },
  hyparquet: {
    name: 'hyparquet', url: '/baselines/hyparquet.html', formats: ['parquet'],
    switchView: baselineSwitch, metricNames: { l2: 'l2_distance', cosine: 'cosine_distance' },
  },
  text: {
    name: 'file.text() + JSON.parse / CSV split', url: '/baselines/text.html', formats: ['csv', 'json'],
    switchView: baselineSwitch, metricNames: { l2: 'l2_distance', cosine: 'cosine_distance' },
  },
}

function baselineSwitch(page, key, value) {
  return page.evaluate((key, value) => window.__bench.timeNextPaint(() => window.benchPage.setView({ [key]: value }), 10_000), key, value)
}

// ---------------------------------------------------------------------------------------------
// Renderer processes (peak RSS)

function rendererPids(browserPid) {
  const children = new Map()
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (!children.has(ppid)) children.set(ppid, [])
      children.get(ppid).push(Number(d))
    } catch { /* gone */ }
  }
  const out = new Set()
  const walk = (pid) => {
    for (const c of children.get(pid) ?? []) {
      try { if (fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('--type=renderer')) out.add(c) } catch { /* gone */ }
      walk(c)
    }
  }
  walk(browserPid)
  return out
}

function peakRssBytes(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/)
    return m ? Number(m[1]) * 1024 : null
  } catch { return null }
}

// ---------------------------------------------------------------------------------------------
// Memory held (after GC): JS heap + ArrayBuffer backing stores + wasm memories, page + workers

async function targetMemory(cdp) {
  await cdp.send('HeapProfiler.collectGarbage')
  const heap = await cdp.send('Runtime.getHeapUsage')
  return { jsHeap: heap.usedSize, embedder: heap.embedderHeapUsedSize ?? 0, backingStore: heap.backingStorageSize ?? 0 }
}

/** JS heap and ArrayBuffer backing stores of the page and its workers (V8 counts wasm memories
 *  in neither), the page's wasm memories (seen by the INSTRUMENT hooks), and the renderer's
 *  resident set, all after a forced GC. */
async function heldMemory(page, pids) {
  const targets = [await page.createCDPSession(), ...page.workers().map((w) => w.client)]
  const parts = []
  for (const cdp of targets) {
    try { parts.push(await targetMemory(cdp)) } catch (e) { log('memory query failed:', e.message) }
  }
  const sum = (k) => parts.reduce((s, p) => s + p[k], 0)
  let wasm = await page.evaluate(() => window.__bench.wasmBytes())
  for (const w of page.workers()) wasm += await w.evaluate(() => self.__benchWasmBytes?.() ?? 0).catch(() => 0)
  return {
    targets: parts.length, workers: targets.length - 1, jsHeap: sum('jsHeap'), embedder: sum('embedder'), backingStore: sum('backingStore'), wasm,
    rendererRss: pids.map(rssBytes).reduce((a, b) => a + (b ?? 0), 0),
  }
}

function rssBytes(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/)
    return m ? Number(m[1]) * 1024 : null
  } catch { return null }
}

// ---------------------------------------------------------------------------------------------
// One run: fresh browser context, navigate, wait for ready, choose the file, wait for the paint

async function measure(browser, origin, readerId, file, { views, memory }) {
  const reader = READERS[readerId]
  const before = rendererPids(browser.process().pid)
  const context = await browser.createBrowserContext()
  const out = { reader: readerId, file: file.id }
  let crashed = null
  try {
    const page = await context.newPage()
    page.on('error', (e) => { crashed = `renderer crashed: ${e.message}` })
    page.on('pageerror', (e) => log(`${readerId} page error:`, String(e.message ?? e).slice(0, 200)))
    await page.evaluateOnNewDocument(INSTRUMENT)
    served = []
    await page.goto(origin + reader.url, { waitUntil: 'load', timeout: 60_000 })
    await page.waitForFunction(() => window.__bench.readyAt !== null, { timeout: 60_000 })
    const marks = await page.evaluate(() => ({
      ready: window.__bench.readyAt,
      miReady: performance.getEntriesByName('mi-ready').map((e) => e.startTime)[0] ?? null,
      domInteractive: performance.getEntriesByType('navigation')[0]?.domInteractive ?? null,
    }))
    out.pageReadyMs = marks.ready
    out.pageMarks = marks
    // The resident set before the wait below: our page warms its decoders up in it
    // (src/web/warmup.rs), and what that leaves behind counts as held, as it did when the same
    // code was compiled during the load.
    const pagePids = [...rendererPids(browser.process().pid)].filter((p) => !before.has(p))
    out.rendererRssBefore = pagePids.map(rssBytes).reduce((a, b) => a + (b ?? 0), 0)
    await new Promise((r) => setTimeout(r, 200)) // let the page settle (idle) before the file comes
    const input = await page.$('input[type=file]')
    if (!input) throw new Error('no input[type=file] on the page')
    await input.uploadFile(file.path)
    const t0 = Date.now()
    while (true) {
      if (crashed) throw new Error(crashed)
      const s = await page.evaluate(() => {
        const b = window.__bench
        const painted = performance.getEntriesByName('mi-painted').filter((e) => b.changeAt !== null && e.startTime >= b.changeAt)
        return { changeAt: b.changeAt, doneAt: b.doneAt, state: b.state, text: b.statusText, paintedAt: painted.length ? painted[0].startTime : null }
      })
      if (s.doneAt !== null && (s.paintedAt !== null || s.state === 'error' || Date.now() - t0 > s.doneAt - s.changeAt + 3000)) {
        out.state = s.state
        out.statusText = s.text?.slice(0, 300)
        out.openToPaintedMs = s.state === 'ready' ? (s.paintedAt ?? s.doneAt) - s.changeAt : null
        // Every row read (status `ready`): later than the first paint where a page shows an
        // early view of the step while the rest of the file is read (ours).
        out.openToReadyMs = s.state === 'ready' ? s.doneAt - s.changeAt : null
        out.paintMark = s.paintedAt !== null
        // Our page's warm-up (src/web/warmup.rs): whether it had ended when the file came.
        const warmEnd = await page.evaluate(() => performance.getEntriesByName('mi-warm-end')[0]?.startTime ?? null)
        if (readerId === 'ours') out.warmedBeforeFile = warmEnd !== null && warmEnd < s.changeAt
        break
      }
      if (Date.now() - t0 > LOAD_TIMEOUT_MS) throw new Error(`no ready/error status after ${LOAD_TIMEOUT_MS / 1000} s`)
      await new Promise((r) => setTimeout(r, 25))
    }
    out.served = served.slice()
    if (out.state === 'ready' && views) {
      out.views = {}
      const state = readerId === 'ours' ? await page.evaluate(() => window.maskImpact.state?.() ?? null) : null
      out.ourState = state
      for (const [key, value] of [['step', 1], ['variant', 'Attn'], ['metric', reader.metricNames.cosine], ['step', 0]]) {
        try { out.views[`${key}=${value}`] = await reader.switchView(page, key, value) } catch (e) { out.views[`${key}=${value}`] = { error: e.message } }
      }
    }
    if (out.state === 'ready' && memory) out.memory = await heldMemory(page, pagePids)
  } catch (e) {
    out.error = crashed ?? e.message
  } finally {
    const after = rendererPids(browser.process().pid)
    const mine = [...after].filter((p) => !before.has(p))
    out.rendererPeakRss = mine.map(peakRssBytes).filter((x) => x !== null).reduce((a, b) => Math.max(a, b), 0) || null
    await context.close().catch(() => {})
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// CLI against the pandas recipe

function timeCommand(cmd, args, outPath) {
  fs.rmSync(outPath, { force: true })
  const t0 = process.hrtime.bigint()
  const r = spawnSync('/usr/bin/time', ['-v', cmd, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 })
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6
  const rss = r.stderr.match(/Maximum resident set size \(kbytes\): (\d+)/)
  const user = r.stderr.match(/User time \(seconds\): ([\d.]+)/)
  const sys = r.stderr.match(/System time \(seconds\): ([\d.]+)/)
  return {
    command: [cmd, ...args].map((a) => path.isAbsolute(a) ? path.relative(ROOT, a) : a).join(' '),
    ok: r.status === 0, wallMs, peakRssBytes: rss ? Number(rss[1]) * 1024 : null,
    // CPU time of all the process's threads (user + system): on 2 cores, wall time is at
    // best half of it for a tool that keeps both busy.
    cpuMs: user && sys ? (Number(user[1]) + Number(sys[1])) * 1000 : null,
    outBytes: fs.existsSync(outPath) ? fs.statSync(outPath).size : null,
    error: r.status === 0 ? undefined : r.stderr.split('\n').filter((l) => l && !l.startsWith('\t')).slice(-3).join(' '),
  }
}

function cliBinary() {
  const p = path.join(ROOT, 'target/release/mask-impact')
  if (!fs.existsSync(p)) return null
  const help = spawnSync(p, ['convert', '--help'], { encoding: 'utf8' })
  return help.status === 0 ? p : null
}

/** The inputs `convert` is timed on: the CSV and JSON files, and the real Parquet file (its
 *  output size beside pandas' is a target of its own). */
const convertInputs = (files) => files.filter((f) => f.format === 'csv' || f.format === 'json' || f.dataset === 'real')

/** Runs per input of our converter, and of the pandas recipe when its first run takes under
 *  `PANDAS_REPEAT_BELOW_MS` (the median is reported). Five: with three, one slow run of a
 *  shared machine moved the median of ours on the seed-scale CSV from 0.29 to 0.34 s (run of
 *  2b3fa26: 425, 335, 293 ms). */
const CONVERT_RUNS = 5
const PANDAS_REPEAT_BELOW_MS = 15000

/** One tool's runs on one input as one result: the median wall time, the largest peak RSS,
 *  every run's wall time. */
function convertResult(file, tool, runs) {
  const ok = runs.filter((r) => r.ok)
  const mid = ok.length ? [...ok].sort((a, b) => a.wallMs - b.wallMs)[Math.floor((ok.length - 1) / 2)] : runs[0]
  const peak = Math.max(...ok.map((r) => r.peakRssBytes ?? 0))
  return { file, tool, ...mid, peakRssBytes: peak || mid.peakRssBytes, runs: runs.length, wallMsAll: runs.map((r) => r.wallMs) }
}

/** The Python of pandas 2.2 (`target/bench-pandas2`, a venv that `cargo xtask bench` makes):
 *  the last pandas before 3.0, whose text columns are Python objects (pandas 3 holds them as
 *  Arrow strings, and ran the recipe on the seed-scale CSV 2.7 times faster in the run of
 *  a2f8d3b). Timed beside the installed pandas on the CSV and Parquet inputs, for context: the
 *  targets are judged against the installed one. */
const PANDAS2_PYTHON = path.join(ROOT, 'target/bench-pandas2/bin/python')

function pandas2() {
  const stack = fs.existsSync(PANDAS2_PYTHON) ? pythonStack(PANDAS2_PYTHON) : null
  return stack && { ...stack, executable: PANDAS2_PYTHON }
}

function benchCli(files, { pandas = () => true } = {}) {
  const cli = cliBinary()
  const old = pandas2()
  const out = { cli: cli ? path.relative(ROOT, cli) : null, pandas2: old && { pandas: old.pandas, pyarrow: old.pyarrow }, runs: [] }
  const outDir = path.join(DATA, 'convert')
  fs.mkdirSync(outDir, { recursive: true })
  for (const f of convertInputs(files)) {
    const ours = path.join(outDir, `${f.id}.ours.parquet`)
    const pandasOut = path.join(outDir, `${f.id}.pandas.parquet`)
    log(`convert ${f.id}`)
    // Each tool starts with the input in the page cache (read once just before), as a
    // converted file usually is: the figures compare work, not the disk. The file is first
    // dropped from the cache (GNU dd's `iflag=nocache count=0`), so that every run finds it
    // cached the same way, by one `read()` pass: how the cache held it otherwise depended on
    // what wrote or read it last (written in 8 KiB pieces by pandas, the seed CSV took 56 ms
    // more to map; kernel 6.18). The two tools' runs alternate, so that both meet the same
    // machine (this one is shared and its speed moves).
    const warm = () => {
      spawnSync('dd', [`if=${f.path}`, 'iflag=nocache', 'count=0', 'status=none'], { stdio: 'ignore' })
      spawnSync('cat', [f.path], { stdio: 'ignore' })
    }
    const oursRuns = [], pandasRuns = [], pandas2Runs = []
    const pandas2Out = path.join(outDir, `${f.id}.pandas2.parquet`)
    for (let i = 0; i < CONVERT_RUNS; i++) {
      if (cli) {
        warm()
        oursRuns.push(timeCommand(cli, ['convert', f.path, '-o', ours], ours))
      }
      // pandas again only where a run is short (it takes up to a minute a file).
      const again = i === 0 || (pandasRuns[0]?.ok && pandasRuns[0].wallMs < PANDAS_REPEAT_BELOW_MS)
      if (pandas(f) && again) {
        warm()
        pandasRuns.push(timeCommand('python3', [path.join(BENCH, 'pandas_convert.py'), f.path, pandasOut], pandasOut))
      }
      const again2 = i === 0 || (pandas2Runs[0]?.ok && pandas2Runs[0].wallMs < PANDAS_REPEAT_BELOW_MS)
      if (old && pandas(f) && f.format !== 'json' && again2) {
        warm()
        pandas2Runs.push(timeCommand(old.executable, [path.join(BENCH, 'pandas_convert.py'), f.path, pandas2Out], pandas2Out))
      }
    }
    if (oursRuns.length) out.runs.push(convertResult(f.id, 'ours', oursRuns))
    if (pandasRuns.length) out.runs.push(convertResult(f.id, 'pandas', pandasRuns))
    if (pandas2Runs.length) out.runs.push(convertResult(f.id, 'pandas2', pandas2Runs))
  }
  return out
}

// ---------------------------------------------------------------------------------------------

/** The versions of the Python stack that the pandas recipe runs on with `python` (its speed
 *  moves with them: pandas 3 reads text columns as Arrow strings, where pandas 2 made Python
 *  objects). */
function pythonStack(executable = 'python3') {
  const r = spawnSync(executable, ['-c', 'import sys, numpy, pandas, pyarrow; print(sys.version.split()[0], numpy.__version__, pandas.__version__, pyarrow.__version__)'], { encoding: 'utf8' })
  const [python, numpy, pandas, pyarrow] = (r.stdout ?? '').trim().split(' ')
  return r.status === 0 && pyarrow ? { python, numpy, pandas, pyarrow } : null
}

function machine(browserVersion) {
  const cpus = os.cpus()
  const git = (args) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' }).stdout.trim()
  return {
    nproc: cpus.length, cpu: cpus[0]?.model, memoryBytes: os.totalmem(), kernel: `${os.type()} ${os.release()}`,
    browser: browserVersion, node: process.version, python: pythonStack(),
    packages: Object.fromEntries(['apache-arrow', 'parquet-wasm', 'hyparquet', 'hyparquet-compressors', 'puppeteer-core'].map((p) => [p, JSON.parse(fs.readFileSync(path.join(BENCH, 'node_modules', p, 'package.json'), 'utf8')).version])),
    commit: git(['rev-parse', '--short', 'HEAD']), dirty: git(['status', '--porcelain', '--', 'src', 'www', 'Cargo.toml']).length > 0,
    date: new Date().toISOString(), loadAverage: os.loadavg(),
  }
}

/** `--cli-only=RESULTS.json`: adds the CLI-against-pandas timings to saved results (for a run
 *  made before the release CLI was built) and rewrites the report. */
function cliOnly(json) {
  const results = JSON.parse(fs.readFileSync(json, 'utf8'))
  // Keeps saved pandas timings; times the CLI (and pandas for the inputs without one).
  const saved = results.convert?.runs.filter((r) => r.tool !== 'ours') ?? []
  const fresh = benchCli(results.files, { pandas: (f) => !saved.some((r) => r.file === f.id) })
  fresh.pandas2 ??= results.convert?.pandas2 ?? null
  fresh.runs = [...fresh.runs, ...saved].sort((a, b) => a.file.localeCompare(b.file) || a.tool.localeCompare(b.tool))
  fresh.retimed = { date: new Date().toISOString(), commit: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim(), loadAverage: os.loadavg() }
  results.convert = fresh
  fs.writeFileSync(json, JSON.stringify(results, null, 1))
  const out = option('out') ?? path.join(ROOT, 'BENCHMARKS.md')
  writeReport(results, out, path.relative(ROOT, path.resolve(json)))
  log(`wrote ${path.relative(ROOT, out)}`)
}

async function main() {
  if (option('cli-only')) return cliOnly(option('cli-only'))
  const t0 = Date.now()
  log(QUICK ? 'quick mode' : 'full mode')
  let files = []
  for (const set of SYNTH) {
    if (!ONLY || set.formats.some((f) => ONLY.includes(`${set.id}.${f}`))) files.push(...ensureSynth(set))
  }
  if (fs.existsSync(REAL)) {
    files.push({ id: 'real.parquet', dataset: 'real', label: 'real file image_question_hair.parquet (2 steps × 36 layers × 34 variants)', format: 'parquet', path: REAL, rows: parquetRows(REAL), bytes: fs.statSync(REAL).size })
  } else log(`real file ${REAL} not found: skipped`)
  if (ONLY) files = files.filter((f) => ONLY.includes(f.id))
  if (flag('only-data')) { log(`data ready in ${((Date.now() - t0) / 1000).toFixed(0)} s`); return }
  await buildBaselines()
  const oursAvailable = fs.existsSync(path.join(ROOT, 'dist/index.html'))
  if (!oursAvailable) log('dist/index.html missing: our page is not measured (run `cargo xtask dist`)')
  else {
    // A snapshot, so that a `cargo xtask dist` running meanwhile cannot change the page under test.
    fs.rmSync(path.join(DATA, 'dist-snapshot'), { recursive: true, force: true })
    fs.cpSync(path.join(ROOT, 'dist'), path.join(DATA, 'dist-snapshot'), { recursive: true })
  }
  const readers = Object.keys(READERS).filter((r) => (r !== 'ours' || oursAvailable) && (!ONLY_READERS || ONLY_READERS.includes(r)))

  const server = await startServer()
  const origin = `http://127.0.0.1:${server.address().port}`
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mi-bench-chromium-'))
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true, userDataDir, protocolTimeout: 600_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run',
      '--disable-features=SpareRendererForSitePerProcess'],
  })
  const results = { quick: QUICK, machine: machine(await browser.version()), files, loads: [], shipped: {} }
  results.chromiumArgs = browser.process().spawnargs.slice(1)
  const servedBy = {}
  try {
    for (const file of files) {
      const rs = readers.filter((r) => READERS[r].formats.includes(file.format))
      const runs = file.runs ?? (QUICK ? 3 : 5)
      // Run 0 is the first (cold) run, reported apart; runs 1..runs are the measured ones.
      for (let i = 0; i <= (runs === 1 ? 0 : Number(option('runs') ?? runs)); i++) {
        for (const r of (i % 2 ? [...rs].reverse() : rs)) {
          log(`${file.id} × ${r}: run ${i}`)
          const m = await measure(browser, origin, r, file, { views: true, memory: true })
          m.run = i
          log(`  → ${m.error ? 'FAILED: ' + m.error : m.state === 'error' ? 'error: ' + m.statusText : `${m.openToPaintedMs?.toFixed(1)} ms`}`)
          results.loads.push(m)
          if (!servedBy[r] && m.served) servedBy[r] = m.served
          delete m.served
        }
      }
    }
  } finally {
    await browser.close()
    server.close()
    fs.rmSync(userDataDir, { recursive: true, force: true })
  }
  // After the runs: brotli at quality 11 of a multi-megabyte wasm takes a while.
  for (const [r, files] of Object.entries(servedBy)) results.shipped[r] = shippedBytes(files)
  if (!flag('no-cli')) results.convert = benchCli(files)
  results.elapsedS = (Date.now() - t0) / 1000
  results.loadAverageEnd = os.loadavg()
  const stamp = results.machine.date.replace(/[:.]/g, '-')
  const json = path.join(DATA, `results-${QUICK ? 'quick-' : ''}${stamp}.json`)
  fs.writeFileSync(json, JSON.stringify(results, null, 1))
  log(`results: ${path.relative(ROOT, json)}`)
  const out = option('out') ?? path.join(ROOT, 'BENCHMARKS.md')
  writeReport(results, out, path.relative(ROOT, json))
  log(`wrote ${path.relative(ROOT, out)} in ${results.elapsedS.toFixed(0)} s`)
}

main().catch((e) => { console.error(e); process.exit(1) })
