// Timeline of one load in our page (a tool for finding where the time goes, not a benchmark):
//
//   node bench/timeline.mjs DIST_DIR FILE [SETTLE_MS=200] [SECOND_FILE] [GAP_MS=500]
//
// serves DIST_DIR on 127.0.0.1, opens index.html in headless Chromium (a fresh context per run,
// 4 runs), waits SETTLE_MS after `window.maskImpact` appears, chooses FILE (then SECOND_FILE
// GAP_MS after the first load, in the same page, when given) and prints the page's `mi-*`
// performance marks and the worker's timings (`readMs`, `fetchMs`, `layoutMs`, `ipcMs`).
import puppeteer from 'puppeteer-core'
import http from 'node:http'
import fs from 'node:fs'
import path from 'node:path'
const dir = process.argv[2], file = process.argv[3], settle = Number(process.argv[4] ?? 200)
const server = http.createServer((req, res) => {
  const p = path.join(dir, decodeURIComponent(req.url.split('?')[0]))
  if (!fs.existsSync(p) || fs.statSync(p).isDirectory()) { res.writeHead(404); return res.end() }
  res.writeHead(200, { 'content-type': p.endsWith('.wasm') ? 'application/wasm' : p.endsWith('.js') ? 'text/javascript' : p.endsWith('.css') ? 'text/css' : 'text/html' })
  fs.createReadStream(p).pipe(res)
}).listen(0, '127.0.0.1')
await new Promise((r) => server.on('listening', r))
const browser = await puppeteer.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'] })
for (let run = 0; run < 4; run++) {
  const ctx = await browser.createBrowserContext()
  const page = await ctx.newPage()
  const logs = []
  page.on('console', async (m) => { try { logs.push([Date.now(), m.text() + ' ' + JSON.stringify(await Promise.all(m.args().slice(1).map((a) => a.jsonValue())))]) } catch (e) {} })
  await page.goto(`http://127.0.0.1:${server.address().port}/index.html`, { waitUntil: 'load' })
  await page.waitForFunction(() => window.maskImpact !== undefined)
  await new Promise((r) => setTimeout(r, settle))
  const input = await page.$('input[type=file]')
  const tc = await page.evaluate(() => performance.now())
  await input.uploadFile(file)
  await page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'ready', { timeout: 60000 })
  if (process.argv[5]) {
    await page.evaluate(() => performance.clearMarks())
    await new Promise((r) => setTimeout(r, Number(process.argv[6] ?? 500)))
    await input.uploadFile(process.argv[5])
    await page.waitForFunction(() => performance.getEntriesByName('mi-full-painted').length > 0, { timeout: 60000 })
  }
  const marks = await page.evaluate(() => performance.getEntries().filter((e) => e.name.startsWith('mi-')).map((e) => [e.name.split('/').pop(), Math.round(e.startTime), Math.round(e.duration)]))
  console.log('run', run, 'chosen at', Math.round(tc), JSON.stringify(marks))
  for (const [, t] of logs) if (t.includes('timings') || t.includes('warm')) console.log('  ', t.slice(0, 200))
  await ctx.close()
}
await browser.close(); server.close()
