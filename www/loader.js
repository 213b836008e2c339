// mask-impact viewer: loader (template).
//
// `cargo xtask dist` turns this file into `mask-impact-viewer.js` by replacing the two
// `/*…*/""` placeholders below with JavaScript string literals: the wasm-bindgen glue
// (`--target no-modules` output) and, for the self-contained builds, the wasm as base64.
// This is the only hand-written JavaScript of the viewer; Rust does everything else.
//
// What it does, in order (the loader ↔ page interface, see xtask/src/dist.rs):
//  1. compiles the wasm into a `WebAssembly.Module` (inline base64, or `mask_impact_bg.wasm`
//     fetched next to this script, resolved against `document.currentScript.src`);
//  2. loads the glue into the page through `<script src=blob:…>` (defines `wasm_bindgen`);
//  3. makes `workerUrl`, a blob URL of a classic worker script = the glue itself followed by a
//     bootstrap that waits for its first message (the `WebAssembly.Module`), initialises
//     wasm-bindgen with it and calls `wasm_bindgen.worker_main()` (Rust then installs its own
//     message handler and posts `{type: "ready"}`). The glue is copied into the worker rather
//     than `importScripts(glueUrl)`: Chromium refuses `importScripts` of the page's blob URL in a
//     worker started from `file://` (opaque origins), while this form works everywhere;
//  4. initialises wasm-bindgen in the page and calls `wasm_bindgen.start_page(module, workerUrl)`.
// Any failure is shown as text in `#status` with `data-state="error"`.
(function () {
  "use strict";
  var GLUE = /*GLUE*/"";
  var WASM_BASE64 = /*WASM_BASE64*/"";
  var WASM_FILE = "mask_impact_bg.wasm";
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

  function compileInline() {
    var binary = atob(WASM_BASE64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return WebAssembly.compile(bytes);
  }

  function compileFetched() {
    var base = (script && script.src) || document.baseURI;
    var url = new URL(WASM_FILE, base);
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
    var glueUrl = URL.createObjectURL(new Blob([GLUE], { type: "text/javascript" }));
    var workerUrl = URL.createObjectURL(new Blob([GLUE, WORKER_BOOTSTRAP], { type: "text/javascript" }));
    var module;
    return (WASM_BASE64 ? compileInline() : compileFetched()).then(function (compiled) {
      module = compiled;
      return loadScript(glueUrl);
    }).then(function () {
      return wasm_bindgen({ module_or_path: module });
    }).then(domReady).then(function () {
      wasm_bindgen.start_page(module, workerUrl);
    });
  }

  start().catch(showError);
})();
