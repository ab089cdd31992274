// Gibbon's page script. The pages work without it (forms post and the server
// renders the results); with it, the drawing pad appears and results update in
// place from the JSON API. No inline scripts: the Content-Security-Policy forbids them.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const results = document.getElementById("results");
  const errorBox = document.getElementById("error");
  if (!results || !errorBox) {
    return; // not the classify page
  }

  // --- talking to the server -------------------------------------------------

  let seq = 0;
  let inFlight = null;
  // sent is the image of each request (by seq), shown is the one the results are
  // for: "Attack this image" carries it to the explorer.
  const sent = new Map();
  let shown = null;

  // classify posts a FormData to the JSON API; only the newest answer is shown.
  // drawing is the pad's version the form holds (results.dataset.drawing says
  // which version the shown results are for).
  async function classify(form, drawing) {
    const mine = ++seq;
    const file = form.get("image");
    sent.clear();
    sent.set(mine, file ? { blob: file, name: file.name || "image.png", kind: form.get("source") === "drawing" ? "drawing" : "upload" } : null);
    if (inFlight) {
      inFlight.abort();
    }
    const ctl = new AbortController();
    inFlight = ctl;
    document.body.classList.add("busy");
    try {
      const resp = await fetch("/api/classify", {
        method: "POST",
        body: form,
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
        signal: ctl.signal,
        credentials: "same-origin",
      });
      let body = null;
      try {
        body = await resp.json();
      } catch (e) {
        body = null;
      }
      if (mine !== seq) {
        return;
      }
      if (!resp.ok) {
        showError((body && body.error) || "The server answered " + resp.status + ".");
        return;
      }
      showError("");
      shown = sent.get(mine) || null;
      renderResult(body);
      results.dataset.drawing = drawing === undefined ? "" : String(drawing);
    } catch (e) {
      if (e.name !== "AbortError" && mine === seq) {
        showError("Could not reach the server: " + e.message);
      }
    } finally {
      if (mine === seq) {
        document.body.classList.remove("busy");
        inFlight = null;
      }
    }
  }

  function showError(msg) {
    errorBox.textContent = msg;
  }

  // --- rendering (the same markup as views/home.templ) ------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) {
        node.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children) {
      if (c !== null && c !== undefined) {
        node.append(c);
      }
    }
    return node;
  }

  function percent(p) {
    return (p * 100).toFixed(1) + " %";
  }

  function millis(ms) {
    if (ms < 10) return ms.toFixed(2) + " ms";
    if (ms < 100) return ms.toFixed(1) + " ms";
    return ms.toFixed(0) + " ms";
  }

  // attackLink opens the explorer on this input with the model to attack. An
  // upload or a drawing goes through the browser's storage (handoff.js).
  function attackLink(m, r) {
    const q = new URLSearchParams({ model: m.name });
    if (r.kind === "sample") q.set("sample", r.sample);
    else q.set("handoff", "1");
    const a = el("a", { class: "attack-link", href: "/attack?" + q.toString(), "data-testid": "attack-this" }, "Attack this image with " + m.name);
    if (r.kind !== "sample") {
      const item = shown;
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        if (!item || !window.GibbonHandoff) {
          showError("The image cannot be carried over: choose it again on the attack page.");
          return;
        }
        window.GibbonHandoff.put(item).then(() => (location.href = a.href), (e) => showError("The image cannot be carried over: " + e.message));
      });
    }
    return a;
  }

  function mnistHint(h) {
    return el("div", { class: "ood" + (h.unlike ? " unlike" : ""), "data-testid": "ood", "data-distance": h.distance },
      el("p", { class: "ood-verdict", "data-testid": "ood-verdict" }, h.verdict),
      el("p", { class: "hint" }, h.explain));
  }

  function modelCard(m, r) {
    const header = el("header", {}, el("h3", {}, m.name));
    if (m.architecture) header.append(el("span", { class: "arch" }, m.architecture));
    if (m.robust) header.append(el("span", { class: "badge" }, "adversarially trained"));
    const card = el("article", { class: "model-card", "data-testid": "model-result", "data-model": m.name }, header);
    if (m.error) {
      card.append(el("p", { class: "model-error", "data-testid": "model-error" }, m.error));
    } else {
      const top = el("ol", { class: "top5", "data-testid": "top5", "aria-label": "Top " + m.top.length + " classes" });
      m.top.forEach((s, i) => {
        top.append(
          el("li", { class: i === 0 ? "score top" : "score", "data-testid": "prediction", "data-label": s.label, "data-probability": s.probability },
            el("span", { class: "label" }, s.label),
            el("meter", { min: 0, max: 1, value: s.probability, "aria-label": s.label + ": " + percent(s.probability) }),
            el("span", { class: "pct" }, percent(s.probability))));
      });
      card.append(
        el("div", { class: "card-body" },
          el("figure", { class: "model-input" },
            el("img", { src: m.input, width: m.input_width * m.zoom, height: m.input_height * m.zoom, alt: "The input " + m.name + " saw", "data-testid": "model-input" }),
            el("figcaption", {}, m.input_width + "×" + m.input_height + " px, shown " + m.zoom + "× without smoothing")),
          top));
    }
    if (m.steps && m.steps.length) {
      const steps = el("ol", { class: "steps", "data-testid": "steps", "aria-label": "Preprocessing steps" });
      m.steps.forEach((s) => steps.append(el("li", {}, s)));
      card.append(steps);
    }
    card.append(el("p", { class: "latency", "data-testid": "latency" },
      "preprocessing " + millis(m.preprocess_ms) + " · inference " + millis(m.inference_ms)));
    if (!m.error) card.append(attackLink(m, r));
    return card;
  }

  function renderResult(r) {
    const head = el("div", { class: "result-head", "data-testid": "result-head" });
    if (r.original) head.append(el("img", { class: "original", src: r.original, alt: "Your input" }));
    head.append(el("div", {}, el("h2", {}, "Results"), el("p", { "data-testid": "result-source" }, r.source + " · " + r.detail)));
    const grid = el("div", { class: "model-grid" });
    (r.models || []).forEach((m) => grid.append(modelCard(m, r)));
    results.replaceChildren(head, ...(r.mnist ? [mnistHint(r.mnist)] : []), grid);
  }

  function clearResults() {
    results.replaceChildren(el("p", { class: "results-empty", "data-testid": "results-empty" },
      "Results appear here: the top 5 classes of every model, with probabilities."));
  }

  // --- upload and samples ----------------------------------------------------

  const upload = document.getElementById("upload-form");
  const fileInput = document.getElementById("image");
  if (upload && fileInput) {
    upload.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (fileInput.files.length === 0) {
        showError("Choose an image file first.");
        return;
      }
      const fd = new FormData();
      fd.append("image", fileInput.files[0]);
      classify(fd);
    });
    fileInput.addEventListener("change", () => {
      if (fileInput.files.length > 0) {
        upload.requestSubmit();
      }
    });
  }

  const samples = document.getElementById("sample-form");
  if (samples) {
    samples.addEventListener("submit", (ev) => {
      const name = ev.submitter && ev.submitter.value;
      if (!name) return; // let the browser post it
      ev.preventDefault();
      const fd = new FormData();
      fd.append("sample", name);
      classify(fd);
    });
  }

  // --- the drawing pad ---------------------------------------------------------

  const panel = document.getElementById("draw");
  const pad = document.getElementById("pad");
  const clear = document.getElementById("clear");
  if (!panel || !pad || !pad.getContext) return;
  panel.hidden = false;
  const ctx = pad.getContext("2d");
  // A stroke about as thick, relative to the digit, as MNIST's pen.
  const penWidth = 22;

  function wipe() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
  }
  wipe();

  let drawing = false;
  let drawn = false;
  let last = null;
  let lastSent = 0;
  let pending = null;
  let version = 0; // bumped by every change to the drawing

  function changed() {
    version++;
    pad.dataset.version = String(version);
  }

  function point(ev) {
    const r = pad.getBoundingClientRect();
    return { x: ((ev.clientX - r.left) * pad.width) / r.width, y: ((ev.clientY - r.top) * pad.height) / r.height };
  }

  function stroke(from, to) {
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    ctx.lineWidth = penWidth;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }

  function sendDrawing() {
    pending = null;
    if (!drawn) return;
    lastSent = Date.now();
    const v = version;
    pad.toBlob((blob) => {
      if (!blob) return;
      const fd = new FormData();
      fd.append("image", blob, "drawing.png");
      fd.append("source", "drawing");
      classify(fd, v);
    }, "image/png");
  }

  // While drawing, update at most every 400 ms; always once the stroke ends.
  function scheduleSend(now) {
    if (now) {
      if (pending) clearTimeout(pending);
      sendDrawing();
      return;
    }
    if (!pending) {
      pending = setTimeout(sendDrawing, Math.max(0, 400 - (Date.now() - lastSent)));
    }
  }

  pad.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    pad.setPointerCapture(ev.pointerId);
    drawing = true;
    drawn = true;
    last = point(ev);
    stroke(last, last);
    changed();
  });
  pad.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    const p = point(ev);
    stroke(last, p);
    last = p;
    changed();
    scheduleSend(false);
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    scheduleSend(true);
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);

  if (clear) {
    clear.addEventListener("click", () => {
      wipe();
      changed();
      drawn = false;
      if (pending) clearTimeout(pending);
      pending = null;
      seq++;
      if (inFlight) inFlight.abort();
      inFlight = null;
      document.body.classList.remove("busy");
      showError("");
      clearResults();
    });
  }
})();
