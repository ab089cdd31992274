// The live attack explorer (views/attack.templ). One websocket per page carries
// every run: a start message (and the image, as one binary message) goes up;
// started/frame messages come down as binary (a 4-byte JSON length, the JSON, then
// the PNGs it lists), the others as JSON text. No inline scripts (CSP).
"use strict";

(function () {
  const root = document.getElementById("explorer");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const maxUpload = Number(root.dataset.maxUpload) || 0;
  const errorBox = $("ax-error");
  const statusLine = $("ax-status");
  const startBtn = $("ax-start");
  const stopBtn = $("ax-stop");

  const st = {
    source: null, // {kind: "sample", name, label} | {kind: "upload"|"drawing", blob, name}
    ws: null,
    wsReady: null,
    phase: "idle", // idle, starting, queued, running, done, stopped, error
    run: 0,
    clickedAt: 0,
    firstFrameMs: null,
    frames: 0,
    loss: [],
    steps: 0,
    defences: [],
    urls: {},
    blobs: {},
    saveKey: null, // the finished run's key: the server saves what it computed
    download: "adversarial.png",
    drawPending: false,
  };

  function setPhase(p) {
    st.phase = p;
    root.dataset.state = p;
    const busy = p === "starting" || p === "queued" || p === "running";
    startBtn.disabled = busy;
    stopBtn.disabled = !busy;
    document.body.classList.toggle("busy", busy);
  }
  setPhase("idle");

  function showError(msg) {
    errorBox.textContent = msg || "";
  }
  function status(msg) {
    statusLine.textContent = msg;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  const percent = (p) => (p * 100).toFixed(1) + " %";

  // Blob URLs are revoked when replaced, so a long run does not pile them up.
  function setImage(img, key, blob) {
    if (st.urls[key]) URL.revokeObjectURL(st.urls[key]);
    st.urls[key] = URL.createObjectURL(blob);
    st.blobs[key] = blob;
    img.src = st.urls[key];
  }

  // --- the image ---------------------------------------------------------------

  const preview = $("ax-source-preview");
  const sourceLabel = $("ax-source-label");
  const sampleButtons = Array.from(document.querySelectorAll("[data-sample]"));

  function chooseSource(src, url, label) {
    st.source = src;
    sampleButtons.forEach((b) => b.setAttribute("aria-pressed", String(src.kind === "sample" && b.dataset.sample === src.name)));
    if (st.urls.preview && st.urls.preview !== url) URL.revokeObjectURL(st.urls.preview);
    st.urls.preview = src.kind === "sample" ? null : url;
    preview.src = url;
    preview.hidden = false;
    sourceLabel.textContent = label;
    showError("");
  }

  sampleButtons.forEach((b) =>
    b.addEventListener("click", () => {
      const img = b.querySelector("img");
      chooseSource({ kind: "sample", name: b.dataset.sample, label: b.dataset.label }, img.src, "Sample digit " + b.dataset.label);
    }));

  const fileInput = $("ax-file");
  fileInput.addEventListener("change", () => {
    const f = fileInput.files[0];
    if (!f) return;
    if (maxUpload && f.size > maxUpload) {
      showError("The file is larger than the " + root.dataset.maxUploadLabel + " upload limit. Choose a smaller image.");
      fileInput.value = "";
      return;
    }
    chooseSource({ kind: "upload", blob: f, name: f.name }, URL.createObjectURL(f), "Upload “" + f.name + "”");
  });

  const pad = $("ax-pad");
  const pctx = pad.getContext("2d");
  let drawing = false;
  let drawn = false;
  let last = null;
  function wipe() {
    pctx.fillStyle = "#fff";
    pctx.fillRect(0, 0, pad.width, pad.height);
  }
  wipe();
  function point(ev) {
    const r = pad.getBoundingClientRect();
    return { x: ((ev.clientX - r.left) * pad.width) / r.width, y: ((ev.clientY - r.top) * pad.height) / r.height };
  }
  function stroke(a, b) {
    pctx.strokeStyle = "#000";
    pctx.lineWidth = 16;
    pctx.lineCap = "round";
    pctx.lineJoin = "round";
    pctx.beginPath();
    pctx.moveTo(a.x, a.y);
    pctx.lineTo(b.x, b.y);
    pctx.stroke();
  }
  function useDrawing() {
    if (!drawn) {
      showError("Draw a digit on the pad first.");
      return;
    }
    pad.toBlob((blob) => {
      if (blob) chooseSource({ kind: "drawing", blob: blob, name: "drawing.png" }, URL.createObjectURL(blob), "Your drawing");
    }, "image/png");
  }
  pad.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    pad.setPointerCapture(ev.pointerId);
    drawing = drawn = true;
    last = point(ev);
    stroke(last, last);
  });
  pad.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    const p = point(ev);
    stroke(last, p);
    last = p;
  });
  const endStroke = () => {
    if (!drawing) return;
    drawing = false;
    useDrawing();
  };
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  $("ax-use-drawing").addEventListener("click", useDrawing);
  $("ax-clear").addEventListener("click", () => {
    wipe();
    drawn = false;
  });

  // --- settings ------------------------------------------------------------------

  const attackSel = $("ax-attack");
  const epsIn = $("ax-eps");
  const stepsIn = $("ax-steps");
  const targeted = $("ax-targeted");
  const targetSel = $("ax-target");
  const paceIn = $("ax-pace");
  const gainIn = $("ax-gain");
  const surrogateBoxes = Array.from(document.querySelectorAll('input[name="surrogate"]'));
  const watchBoxes = Array.from(document.querySelectorAll('input[name="watch"]'));
  const transformRows = Array.from(document.querySelectorAll(".ax-transform"));

  function epsText(k) {
    return k + "/255 = " + (k / 255).toFixed(3);
  }
  function gain() {
    return Math.pow(2, Number(gainIn.value));
  }
  function isNetwork() {
    return attackSel.value.startsWith("net:");
  }
  function chosenSurrogates() {
    return surrogateBoxes.filter((b) => b.checked && !b.disabled);
  }

  function updateSettings() {
    const opt = attackSel.selectedOptions[0];
    $("ax-attack-note").textContent = opt ? opt.dataset.note || "" : "";
    $("ax-eps-out").textContent = epsText(Number(epsIn.value));
    const m = attackSel.value;
    $("ax-steps-label").textContent = m === "square" ? "Queries" : m === "noise" ? "Draws" : "Steps";
    stepsIn.disabled = m === "fgsm" || isNetwork();
    const pace = Number(paceIn.value);
    $("ax-pace-out").textContent = pace ? pace + " ms per step" : "off";
    $("ax-gain-out").textContent = "×" + gain();
    surrogateBoxes.forEach((b) => (b.disabled = isNetwork()));
    targeted.disabled = isNetwork();
    // Models attacked together take the same input; a watching model needs the
    // same kind of image (gray or colour) and gets it resized to its own input.
    const first = chosenSurrogates()[0];
    const key = first ? first.dataset.inputKey : null;
    const channels = first ? first.dataset.channels : null;
    surrogateBoxes.forEach((b) => {
      if (!isNetwork()) b.disabled = key !== null && b.dataset.inputKey !== key;
    });
    watchBoxes.forEach((b) => (b.disabled = channels !== null && b.dataset.channels !== channels));
    transformRows.forEach((row) => {
      row.querySelectorAll("option").forEach((o) => (o.disabled = channels !== null && o.dataset.channels !== channels));
      const sel = row.querySelector('[data-role="model"]');
      if (sel.selectedOptions[0] && sel.selectedOptions[0].disabled && first) sel.value = first.value;
    });
    // The target picker lists the attacked model's classes.
    const labels = first ? JSON.parse(first.dataset.labels || "[]") : [];
    if (targetSel.dataset.for !== (first ? first.value : "")) {
      targetSel.replaceChildren(...labels.map((l, i) => el("option", { value: i }, l)));
      targetSel.dataset.for = first ? first.value : "";
    }
    targetSel.disabled = !targeted.checked || targeted.disabled;
  }
  [attackSel, epsIn, stepsIn, targeted, paceIn, ...surrogateBoxes].forEach((x) => {
    x.addEventListener("input", updateSettings);
    x.addEventListener("change", updateSettings);
  });
  updateSettings();

  gainIn.addEventListener("input", () => {
    updateSettings();
    if (st.ws && st.ws.readyState === WebSocket.OPEN && st.run) {
      st.ws.send(JSON.stringify({ type: "gain", gain: gain() }));
    }
  });

  // --- the socket ------------------------------------------------------------------

  function socket() {
    if (st.ws && st.ws.readyState === WebSocket.OPEN) return Promise.resolve(st.ws);
    if (st.wsReady) return st.wsReady;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.socket;
    st.wsReady = new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        st.ws = ws;
        st.wsReady = null;
        resolve(ws);
      };
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        const wasOpen = st.ws === ws;
        st.ws = null;
        st.wsReady = null;
        if (!wasOpen) {
          reject(new Error("could not connect to the server"));
          return;
        }
        // 1008 (a limit of this page's) and 1013 (the server is full) carry a
        // reason meant for the person: show it whatever the page was doing.
        const refused = (ev.code === 1008 || ev.code === 1013) && ev.reason;
        const busy = st.phase === "starting" || st.phase === "queued" || st.phase === "running";
        if (refused) showError(ev.reason);
        if (busy) {
          if (!refused) showError("The connection to the server was lost" + (ev.reason ? " (" + ev.reason + ")" : "") + "; the run stopped.");
          setPhase("error");
          status("Disconnected.");
        }
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data === "string") onText(JSON.parse(ev.data));
        else onBinary(ev.data);
      };
    });
    return st.wsReady;
  }

  function onText(m) {
    switch (m.type) {
      case "queued":
        setPhase("queued");
        status("Waiting in line: position " + m.position + " (" + m.running + " running).");
        break;
      case "error":
        showError(m.message);
        if (st.phase !== "done" && st.phase !== "idle") {
          setPhase("error");
          status("Not started: " + m.message);
        }
        break;
      case "done":
        onDone(m);
        break;
    }
  }

  function onBinary(buf) {
    const n = new DataView(buf).getUint32(0);
    const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
    const images = {};
    (head.images || []).forEach((im, i) => {
      const blob = new Blob([new Uint8Array(buf, 4 + n + im.offset, im.length)], { type: "image/png" });
      images[im.role === "head" ? "head" + i : im.role] = { blob: blob, meta: im };
    });
    if (head.type === "started") onStarted(head, images);
    else if (head.type === "frame") onFrame(head, images);
    else if (head.type === "perturbation" && images.perturbation) setImage($("ax-pert"), "pert", images.perturbation.blob);
  }

  // --- a run ---------------------------------------------------------------------------

  function collect() {
    const msg = {
      type: "start",
      attack: attackSel.value,
      eps: Number(epsIn.value),
      steps: Number(stepsIn.value),
      surrogates: isNetwork() ? [] : chosenSurrogates().map((b) => b.value),
      watch: watchBoxes.filter((b) => b.checked && !b.disabled).map((b) => ({ model: b.value })),
      gain: gain(),
      pace_ms: Number(paceIn.value),
    };
    if (targeted.checked && !targeted.disabled) msg.target = Number(targetSel.value);
    transformRows.forEach((row) => {
      const box = row.querySelector('input[type="checkbox"]');
      if (!box.checked) return;
      msg.watch.push({
        model: row.querySelector('[data-role="model"]').value,
        defence: row.dataset.defence,
        param: Number(row.querySelector('[data-role="param"]').value),
      });
    });
    const src = st.source;
    msg.source = src.kind;
    if (src.kind === "sample") msg.sample = src.name;
    else msg.image_bytes = src.blob.size;
    return msg;
  }

  startBtn.addEventListener("click", async () => {
    showError("");
    if (!st.source) {
      showError("Choose an image first: a sample, an upload or a drawing.");
      return;
    }
    const msg = collect();
    setPhase("starting");
    status("Starting…");
    st.clickedAt = performance.now();
    st.firstFrameMs = null;
    try {
      const ws = await socket();
      ws.send(JSON.stringify(msg));
      if (st.source.kind !== "sample") ws.send(st.source.blob);
    } catch (e) {
      setPhase("error");
      showError("Could not reach the server: " + e.message);
      status("Not started.");
    }
  });

  stopBtn.addEventListener("click", () => {
    if (st.ws && st.ws.readyState === WebSocket.OPEN) st.ws.send(JSON.stringify({ type: "stop" }));
    status("Stopping…");
  });

  function onStarted(m, images) {
    st.run = m.run;
    st.frames = 0;
    st.loss = [];
    st.steps = m.steps;
    st.saveKey = null;
    setPhase("running");
    $("ax-finish").hidden = true;
    $("ax-saved").textContent = "";
    if (images.clean) setImage($("ax-clean"), "clean", images.clean.blob);
    showCrop(m, images.clean ? images.clean.meta : null);
    $("ax-adv").removeAttribute("src");
    $("ax-pert").removeAttribute("src");
    $("ax-heads").hidden = true;
    $("ax-heads").replaceChildren();
    let what = m.attack_label + (m.surrogates && m.surrogates.length ? " on " + m.surrogates.join(" + ") : "") + ", ε " + m.eps_label;
    if (m.target_label) what += ", target “" + m.target_label + "”";
    status("Running " + what + " (seed " + m.seed + ")…");
    st.defences = m.defences;
    renderDefences(m.defences, null);
    drawLoss();
    $("ax-metrics").textContent = m.source + " · " + m.input + " · " + providersText(m.providers);
  }

  // Photos (ImageNet-sized inputs) are shown at their own size and smoothed;
  // digits are enlarged with square pixels. The caption says which crop of the
  // upload the model sees.
  function showCrop(m, meta) {
    const photo = !!meta && meta.width >= 96;
    const box = document.querySelector(".ax-images");
    box.classList.toggle("ax-photo", photo);
    if (photo) {
      box.style.setProperty("--ax-w", meta.width + "px");
      box.style.setProperty("--ax-h", meta.height + "px");
    }
    ["ax-clean", "ax-adv", "ax-pert"].forEach((id) => {
      const img = $(id);
      img.classList.toggle("pixelated", !photo);
      if (meta) {
        img.width = photo ? meta.width : 168;
        img.height = photo ? meta.height : 168;
      }
    });
    const crop = $("ax-crop");
    const steps = m.crop || [];
    if (!meta || !m.source_width) {
      crop.hidden = true;
      return;
    }
    crop.hidden = false;
    crop.textContent = "The model sees this " + meta.width + "×" + meta.height + " px image, made from the " +
      m.source_width + "×" + m.source_height + " px original" + (steps.length ? ": " + steps.join(", then ") : " as it is") +
      ". The attack changes these pixels, and the download is this size.";
  }

  const epNames = { cpu: "CPU", cuda: "CUDA", webgpu: "WebGPU" };
  // providersText says where the passes run: "all on CPU", or per model and pass.
  function providersText(ps) {
    if (!ps || !ps.length) return "";
    const eps = Array.from(new Set(ps.map((p) => p.ep)));
    if (eps.length === 1) return "all passes on " + (epNames[eps[0]] || eps[0]);
    return ps.map((p) => p.model + " " + p.pass + " on " + (epNames[p.ep] || p.ep)).join(", ");
  }

  function onFrame(f, images) {
    if (f.run !== st.run) return;
    if (st.frames === 0) {
      st.firstFrameMs = performance.now() - st.clickedAt;
      root.dataset.firstFrameMs = st.firstFrameMs.toFixed(1);
    }
    st.frames++;
    root.dataset.frames = String(st.frames);
    if (images.adv) setImage($("ax-adv"), "adv", images.adv.blob);
    if (images.perturbation) setImage($("ax-pert"), "pert", images.perturbation.blob);
    (f.loss || []).forEach((v, i) => (st.loss[f.loss_from + i] = v));
    const what = f.queries ? "query " + f.queries : "step " + f.step + " of " + f.steps;
    $("ax-step").textContent = f.final ? "(final, " + what + ")" : "(" + what + ")";
    let metrics = "L∞ " + f.linf + "/255";
    if (f.pred) metrics += " · attacked model says " + f.pred;
    if (f.chosen) metrics += " · defences see head " + f.chosen;
    const t = f.timing || {};
    if (t.step_ms) metrics += " · " + t.step_ms.toFixed(1) + " ms/step";
    if (t.verdict_ms !== undefined) metrics += " · defences " + t.verdict_ms.toFixed(1) + " ms";
    const where = providersText(t.providers);
    if (where) metrics += " · " + where;
    root.dataset.providers = JSON.stringify(t.providers || []);
    $("ax-metrics").textContent = metrics;
    renderHeads(images);
    renderDefences(st.defences, f.defences);
    scheduleLoss();
    if (f.final) st.blobs.final = images.adv ? images.adv.blob : null;
  }

  function renderHeads(images) {
    const heads = Object.keys(images).filter((k) => k.startsWith("head")).map((k) => images[k]);
    const box = $("ax-heads");
    if (!heads.length) return;
    box.hidden = false;
    box.replaceChildren(...heads.map((h) => {
      const img = el("img", { class: "pixelated", width: 112, height: 112, alt: h.meta.label });
      img.src = URL.createObjectURL(h.blob);
      img.onload = () => URL.revokeObjectURL(img.src);
      return el("figure", {}, img, el("figcaption", {}, h.meta.label + " · L∞ " + h.meta.linf + "/255"));
    }));
  }

  function topList(top) {
    const ol = el("ol", { class: "top5", "data-testid": "defence-top5" });
    (top || []).forEach((s, i) =>
      ol.append(el("li", { class: i === 0 ? "score top" : "score", "data-label": s.label, "data-probability": s.probability },
        el("span", { class: "label" }, s.label),
        el("meter", { min: 0, max: 1, value: s.probability, "aria-label": s.label + ": " + percent(s.probability) }),
        el("span", { class: "pct" }, percent(s.probability)))));
    return ol;
  }

  function renderDefences(defs, states) {
    const box = $("ax-defences");
    box.replaceChildren(...defs.map((d, i) => {
      const s = states ? states[i] : null;
      const flipped = !!(s && s.flipped);
      const card = el("article", { class: "ax-defence" + (flipped ? " flipped" : ""), "data-testid": "defence", "data-name": d.name, "data-flipped": String(flipped) });
      const header = el("header", {}, el("h3", {}, d.name));
      if (d.robust) header.append(el("span", { class: "badge" }, "adversarially trained"));
      if (d.random) header.append(el("span", { class: "badge random" }, "random: changes per draw"));
      card.append(header);
      const clean = d.clean && d.clean[0];
      card.append(el("p", { class: "ax-clean-verdict", "data-testid": "defence-clean" }, "Clean image: ",
        clean ? el("b", {}, clean.label) : "—", clean ? " " + percent(clean.probability) : ""));
      if (d.input) card.append(el("p", { class: "hint", "data-testid": "defence-input" }, d.input));
      if (d.error) card.append(el("p", { class: "model-error" }, d.error));
      if (s && s.error) card.append(el("p", { class: "model-error" }, s.error));
      if (s && s.top) {
        card.append(topList(s.top));
        if (flipped) card.append(el("p", { class: "ax-flip", "data-testid": "defence-flip" }, "Label flipped: " + clean.label + " → " + s.top[0].label));
        else card.append(el("p", { class: "ax-held", "data-testid": "defence-held" }, "Still " + (clean ? clean.label : "?")));
      } else {
        card.append(topList(d.clean));
      }
      return card;
    }));
  }

  // --- the loss curve --------------------------------------------------------------------

  let lossQueued = false;
  function scheduleLoss() {
    if (lossQueued) return;
    lossQueued = true;
    requestAnimationFrame(() => {
      lossQueued = false;
      drawLoss();
    });
  }

  function drawLoss() {
    const c = $("ax-loss");
    const g = c.getContext("2d");
    const w = c.width, h = c.height, padL = 44, padB = 18, padT = 8;
    g.clearRect(0, 0, w, h);
    g.fillStyle = "#fff";
    g.fillRect(0, 0, w, h);
    const pts = [];
    st.loss.forEach((v, i) => {
      if (v !== null && v !== undefined && isFinite(v)) pts.push([i, v]);
    });
    g.strokeStyle = "#d8dde4";
    g.strokeRect(padL, padT, w - padL - 4, h - padT - padB);
    g.fillStyle = "#55606e";
    g.font = "11px system-ui, sans-serif";
    if (!pts.length) {
      g.fillText("no loss yet", padL + 8, h / 2);
      return;
    }
    let lo = Math.min(...pts.map((p) => p[1]));
    let hi = Math.max(...pts.map((p) => p[1]));
    if (hi - lo < 1e-6) {
      hi += 0.5;
      lo -= 0.5;
    }
    const n = Math.max(st.steps, st.loss.length - 1, 1);
    const x = (i) => padL + ((w - padL - 8) * i) / n;
    const y = (v) => padT + ((h - padT - padB) * (hi - v)) / (hi - lo);
    g.fillText(hi.toPrecision(3), 2, padT + 10);
    g.fillText(lo.toPrecision(3), 2, h - padB);
    g.fillText("step " + (st.loss.length - 1), w - 70, h - 4);
    g.strokeStyle = "#1f5fa8";
    g.lineWidth = 2;
    g.beginPath();
    pts.forEach((p, k) => (k ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
    g.stroke();
  }

  // --- the end ----------------------------------------------------------------------------

  function onDone(m) {
    if (m.run !== st.run) return;
    const t = m.timings || {};
    const speed = [];
    if (st.firstFrameMs !== null) speed.push("first frame after " + Math.round(st.firstFrameMs) + " ms");
    if (t.frames_per_second) speed.push(t.frames_per_second.toFixed(1) + " frames/s");
    if (t.encode_ms_per_frame !== undefined) speed.push("PNG encoding " + t.encode_ms_per_frame.toFixed(2) + " ms/frame on the server");
    const where = providersText(m.providers);
    if (where) speed.push(where);
    root.dataset.fps = t.frames_per_second ? t.frames_per_second.toFixed(2) : "";
    if (m.stopped) {
      setPhase("stopped");
      status("Stopped: " + m.reason + " " + (speed.length ? "(" + speed.join(" · ") + ")" : ""));
      return;
    }
    setPhase("done");
    status("Done: " + m.flipped + " of " + m.watched + " defences changed their answer; L∞ " + m.linf + "/255 after " + m.steps + " steps (" + speed.join(" · ") + ").");
    $("ax-summary").textContent = m.flipped + " of " + m.watched + " defences fooled · L∞ " + m.linf + "/255 · seed " + m.seed;
    const dl = $("ax-download");
    if (st.blobs.final) {
      if (st.urls.final) URL.revokeObjectURL(st.urls.final);
      st.urls.final = URL.createObjectURL(st.blobs.final);
      dl.href = st.urls.final;
      dl.download = m.download || "adversarial.png";
    }
    st.saveKey = m.saveable ? m.key : null;
    const form = $("ax-save-form");
    if (form) form.hidden = !st.saveKey;
    if (m.no_save) $("ax-saved").textContent = m.no_save;
    $("ax-finish").hidden = false;
  }

  const saveForm = $("ax-save-form");
  if (saveForm) {
    saveForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!st.saveKey) return;
      const btn = $("ax-save");
      btn.disabled = true;
      const saved = $("ax-saved");
      saved.textContent = "Saving…";
      try {
        const body = { title: $("ax-title").value.trim() };
        const resp = await fetch("/api/runs/" + st.saveKey + "/save", {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "application/json" },
          body: JSON.stringify(body),
          credentials: "same-origin",
        });
        const res = await resp.json().catch(() => null);
        if (!resp.ok) {
          saved.textContent = "Not saved: " + ((res && res.error) || "the server answered " + resp.status + ".");
          return;
        }
        st.saveKey = null;
        saved.replaceChildren("Saved: ", el("a", { href: res.permalink, "data-testid": "attack-permalink" }, res.permalink),
          ". Keep this link to delete it later: ", el("a", { href: res.delete_url }, "delete link"), ".");
        saveForm.hidden = true;
      } catch (e) {
        saved.textContent = "Not saved: " + e.message;
      } finally {
        btn.disabled = false;
      }
    });
  }
})();
