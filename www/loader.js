// mask-impact viewer: loader (template).
//
// `cargo xtask dist` turns this file into `mask-impact-viewer.js` by replacing the
// `/*…*/""` placeholders below with JavaScript string literals: the wasm-bindgen glues
// (`--target no-modules` output), the wasm file names and, for the self-contained builds, the
// wasm modules as base64.
// This is the only hand-written JavaScript of the viewer; Rust does everything else.
//
// What it does, in order (the loader ↔ page interface, see xtask/src/dist.rs). There are two
// wasm modules built from the same crate (xtask/src/build.rs): the page's (view, render, DOM)
// and the decode worker's (ingest, codecs); each has its own glue.
//  1. starts compiling both modules into `WebAssembly.Module`s at once (inline base64, or
//     `mask_impact_page.wasm` / `mask_impact_worker.wasm` fetched next to this script, resolved
//     against `document.currentScript.src`); the page waits only for its own;
//  2. loads the page's glue into the page through `<script src=blob:…>` (defines `wasm_bindgen`);
//  3. makes `workerUrl`, a blob URL of a classic worker script = the worker's glue followed by a
//     bootstrap that waits for its first message (the worker's `WebAssembly.Module`), initialises
//     wasm-bindgen with it and calls `wasm_bindgen.worker_main()` (Rust then installs its own
//     message handler and posts `{type: "ready"}`). The glue is copied into the worker rather
//     than `importScripts(glueUrl)`: Chromium refuses `importScripts` of the page's blob URL in a
//     worker started from `file://` (opaque origins), while this form works everywhere;
//  4. initialises wasm-bindgen in the page and calls `wasm_bindgen.start_page(workerModule,
//     workerUrl)`, `workerModule` being the promise of the worker's module (the page posts it to
//     each worker once compiled).
// Any failure is shown as text in `#status` with `data-state="error"`.
(function () {
  "use strict";
  var PAGE_GLUE = /*PAGE_GLUE*/"";
  var WORKER_GLUE = /*WORKER_GLUE*/"";
  var PAGE_WASM_FILE = /*PAGE_WASM_FILE*/"";
  var WORKER_WASM_FILE = /*WORKER_WASM_FILE*/"";
  var PAGE_WASM_BASE64 = /*PAGE_WASM_BASE64*/"";
  var WORKER_WASM_BASE64 = /*WORKER_WASM_BASE64*/"";
  var script = document.currentScript;

  function domReady() {
    if (document.readyState !== "loading") return Promise.resolve();
    return new Promise(function (resolve) {
      document.addEventListener("DOMContentLoaded", resolve, { once: true });
    });
  }

  function showError(err) {
    var text = "The viewer could not start: " + (err && err.message ? err.message : String(err));
    domReady().then(function () {
      var status = document.getElementById("status");
      if (!status) { console.error(text); return; }
      status.setAttribute("data-state", "error");
      status.textContent = text;
    });
  }

  function compileInline(base64) {
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return WebAssembly.compile(bytes);
  }

  function compileFetched(file) {
    var base = (script && script.src) || document.baseURI;
    var url = new URL(file, base);
    return fetch(url).catch(function () {
      var hint = url.protocol === "file:"
        ? " (browsers do not fetch files from file:// pages: run `cargo xtask serve`, or open" +
          " mask-impact-viewer.html, the single-file build)"
        : "";
      throw new Error("cannot load " + url + hint);
    }).then(function (response) {
      if (!response.ok) throw new Error("cannot load " + url + ": HTTP " + response.status);
      // compileStreaming needs the `application/wasm` MIME type; some hosts send another one.
      return WebAssembly.compileStreaming(response.clone()).catch(function () {
        return response.arrayBuffer().then(function (buffer) { return WebAssembly.compile(buffer); });
      });
    });
  }

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var element = document.createElement("script");
      element.src = src;
      element.onload = resolve;
      element.onerror = function () {
        reject(new Error("the wasm-bindgen glue was refused (check the page's Content-Security-Policy)"));
      };
      document.head.appendChild(element);
    });
  }

  var WORKER_BOOTSTRAP =
    "\n;self.onmessage = function (event) {\n" +
    "  self.onmessage = null;\n" +
    "  wasm_bindgen({ module_or_path: event.data }).then(function () {\n" +
    "    wasm_bindgen.worker_main();\n" +
    "  }).catch(function (err) { setTimeout(function () { throw err; }); });\n" +
    "};\n";

  function start() {
    if (typeof WebAssembly !== "object" || typeof Worker !== "function" || typeof Blob !== "function") {
      return Promise.reject(new Error("this browser lacks WebAssembly, Web Workers or Blob support"));
    }
    var glueUrl = URL.createObjectURL(new Blob([PAGE_GLUE], { type: "text/javascript" }));
    var workerUrl = URL.createObjectURL(new Blob([WORKER_GLUE, WORKER_BOOTSTRAP], { type: "text/javascript" }));
    var pageModule = PAGE_WASM_BASE64 ? compileInline(PAGE_WASM_BASE64) : compileFetched(PAGE_WASM_FILE);
    // Inline: the worker's (larger) base64 is decoded after the page's module is compiled, so
    // that it does not hold up the page; fetched: both download and compile side by side.
    var workerModule = WORKER_WASM_BASE64
      ? pageModule.then(function () { return compileInline(WORKER_WASM_BASE64); })
      : compileFetched(WORKER_WASM_FILE);
    // Reported by the page when it posts the module to a worker; not an unhandled rejection here.
    workerModule.catch(function () {});
    return pageModule.then(function (module) {
      return loadScript(glueUrl).then(function () {
        return wasm_bindgen({ module_or_path: module });
      });
    }).then(domReady).then(function () {
      wasm_bindgen.start_page(workerModule, workerUrl);
    });
  }

  start().catch(showError);
})();
