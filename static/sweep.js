// The ε sweep page and the matrix pages (views/sweep.templ, views/matrix.templ). One
// websocket per page: a start message (and an uploaded image as one binary message)
// goes up; started, point, progress, done, stopped and error come down as JSON. The
// chart (chart.js) and the table beside it are redrawn from the same state at every
// point or batch. A page opened from a gallery entry draws the entry's stored results
// first. No inline scripts (CSP).
"use strict";

(function () {
  const root = document.getElementById("sweep") || document.getElementById("matrix");
  if (!root || !window.GibbonChart) return;
  const Chart = window.GibbonChart;
  const page = root.dataset.page; // sweep, compete or transfer
  const P = page === "sweep" ? "sw" : "mx";
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const errorBox = $(P + "-error");
  const statusLine = $(P + "-status");
  const startBtn = $(P + "-start");
  const stopBtn = $(P + "-stop");
  const bar = $(P + "-progress");
  const chartBox = $(P + "-chart");
  const caption = $(P + "-caption");
  const table = $(P + "-table");
  const finish = $(P + "-finish");

  const st = { ws: null, wsReady: null, phase: "idle", run: 0, started: null, points: [], thumbs: [], result: null, saveKey: null, csv: "", urls: {}, source: null };
  window.__sweepRenders = [];

  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) n.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) n.append(c);
    return n;
  }
  const pct = (v) => (100 * v).toFixed(1) + " %";
  const num = (v) => String(Math.round(v * 1e4) / 1e4);
  function showError(msg) { errorBox.textContent = msg || ""; }
  function status(msg) { statusLine.textContent = msg; }
  function setPhase(p) {
    st.phase = p;
    root.dataset.state = p;
    const busy = p === "starting" || p === "queued" || p === "running";
    startBtn.disabled = busy;
    stopBtn.disabled = !busy;
  }
  setPhase("idle");

  // --- the form -----------------------------------------------------------------

  const kindInputs = Array.from(document.querySelectorAll('input[name="kind"]'));
  function kind() {
    if (page !== "sweep") return page;
    return (kindInputs.find((i) => i.checked) || {}).value || "image";
  }
  function showKind() {
    document.querySelectorAll("[data-show]").forEach((n) => { n.hidden = n.dataset.show !== kind(); });
  }
  kindInputs.forEach((i) => i.addEventListener("change", showKind));
  showKind();

  // Defences that take another input than the attacked model cannot judge it.
  const modelSelect = $(P + "-model");
  function inputKey() {
    const opt = modelSelect && modelSelect.selectedOptions[0];
    if (opt) return opt.dataset.inputKey;
    const src = document.querySelector('input[name="source"]:checked[data-input-key]');
    return src ? src.dataset.inputKey : null;
  }
  function filterDefences() {
    const key = inputKey();
    document.querySelectorAll('input[name="defence-model"], input[name="source"][data-input-key]').forEach((c) => {
      const off = key && c.dataset.inputKey !== key;
      c.disabled = !!off;
      if (off) c.checked = false;
    });
    document.querySelectorAll('.ax-transform select[data-role="model"] option').forEach((o) => {
      o.disabled = !!(key && o.dataset.inputKey !== key);
    });
  }
  if (modelSelect) modelSelect.addEventListener("change", filterDefences);
  document.querySelectorAll('input[name="source"]').forEach((c) => c.addEventListener("change", filterDefences));
  filterDefences();

  function defences() {
    const out = [];
    document.querySelectorAll('input[name="defence-model"]:checked').forEach((c) => out.push(c.value));
    document.querySelectorAll(".ax-transform").forEach((row) => {
      const on = row.querySelector('input[name="defence-transform"]');
      if (!on || !on.checked) return;
      const model = row.querySelector('[data-role="model"]').value;
      const param = row.querySelector('[data-role="param"]').value;
      out.push(model + "+" + on.value + ":" + param);
    });
    return out;
  }

  const epsInput = $(P + "-eps");
  const epsHint = $(P + "-eps-hint");
  if (epsInput && epsHint) {
    epsInput.addEventListener("input", () => {
      const t = epsInput.value.trim();
      const parts = t.split(":");
      if (parts.length === 3 && parts.every((p) => p.trim() !== "" && Number.isFinite(frac(p)))) {
        const [a, b, s] = parts.map(frac);
        const n = s > 0 && b >= a ? Math.floor((b - a) / s + 1e-6) + 1 : 0;
        epsHint.textContent = n > 0 ? `${n} values from ${num(a)} to ${num(a + (n - 1) * s)}` : "TO must not be below FROM, and STEP must be positive";
      } else if (t && t.split(",").every((p) => p.trim() === "" || Number.isFinite(frac(p)))) {
        const n = t.split(",").filter((p) => p.trim()).length;
        epsHint.textContent = n === 1 ? "1 value" : `${n} values`;
      } else {
        epsHint.textContent = "write FROM:TO:STEP (0:0.4:0.025) or a list (0.1,0.2,0.3); 8/255 works too";
      }
    });
  }
  function frac(s) {
    const [a, b] = s.split("/");
    const v = Number(a.trim());
    if (b === undefined) return v;
    const d = Number(b.trim());
    return d ? v / d : NaN;
  }

  // The image (sweep page).
  const preview = $("sw-source-preview");
  const sourceLabel = $("sw-source-label");
  const sampleButtons = Array.from(document.querySelectorAll("[data-sample]"));
  function chooseSource(src, url, label) {
    st.source = src;
    sampleButtons.forEach((b) => b.setAttribute("aria-pressed", String(src.kind === "sample" && b.dataset.sample === src.name)));
    if (preview) {
      preview.src = url;
      preview.hidden = false;
    }
    if (sourceLabel) sourceLabel.textContent = label;
    showError("");
  }
  sampleButtons.forEach((b) => b.addEventListener("click", () =>
    chooseSource({ kind: "sample", name: b.dataset.sample }, b.querySelector("img").src, "Sample digit " + b.dataset.label)));
  const pressed = sampleButtons.find((b) => b.getAttribute("aria-pressed") === "true");
  if (pressed) chooseSource({ kind: "sample", name: pressed.dataset.sample }, pressed.querySelector("img").src, "Sample digit " + pressed.dataset.label);
  const fileInput = $("sw-file");
  if (fileInput) {
    fileInput.addEventListener("change", () => {
      const f = fileInput.files[0];
      if (!f) return;
      const maxUpload = Number(root.dataset.maxUpload) || 0;
      if (maxUpload && f.size > maxUpload) {
        showError("The file is larger than the " + root.dataset.maxUploadLabel + " upload limit. Choose a smaller image.");
        fileInput.value = "";
        return;
      }
      chooseSource({ kind: "upload", blob: f, name: f.name }, URL.createObjectURL(f), "Upload “" + f.name + "”");
    });
  }

  function settings() {
    const k = kind();
    const s = { kind: k, eps: epsInput.value.trim(), seed: Number($(P + "-seed").value) || 0, label: -1 };
    const steps = Number($(P + "-steps").value);
    if (steps > 0) s.steps = steps;
    if (k === "image" || k === "dataset") {
      s.attack = $("sw-attack").value;
      if (!s.attack.startsWith("net:")) s.models = [modelSelect.value];
      s.defences = defences();
      if (k === "dataset") s.n = Number($("sw-n").value) || 0;
      else {
        const l = $("sw-label").value.trim();
        if (l !== "") s.label = Number(l);
        if (st.source && st.source.kind === "upload") s.image = st.source.name;
      }
    } else if (k === "compete") {
      s.attacks = Array.from(document.querySelectorAll('input[name="entrant"]:checked')).map((c) => c.value);
      s.models = [modelSelect.value];
      s.defences = defences();
      s.n = Number($("mx-n").value) || 0;
      s.batch = Number($("mx-batch").value) || 0;
    } else {
      s.attack = $("mx-attack").value;
      s.models = Array.from(document.querySelectorAll('input[name="source"]:checked')).map((c) => c.value);
      s.defences = defences();
      s.n = Number($("mx-n").value) || 0;
    }
    return s;
  }

  // --- the websocket ----------------------------------------------------------------

  function connect() {
    if (st.ws && st.ws.readyState <= 1) return st.wsReady;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.socket;
    const ws = new WebSocket(url);
    st.ws = ws;
    st.wsReady = new Promise((ok, fail) => {
      ws.addEventListener("open", () => ok(ws), { once: true });
      ws.addEventListener("error", () => fail(new Error("The connection to the server failed.")), { once: true });
    });
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") return;
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      onMessage(m);
    });
    ws.addEventListener("close", (ev) => {
      // 1008 (a limit of this page's) and 1013 (the server is full) carry a
      // reason meant for the person: show it whatever the page was doing.
      const refused = (ev.code === 1008 || ev.code === 1013) && ev.reason;
      if (refused) showError(ev.reason);
      if (st.phase === "starting" || st.phase === "queued" || st.phase === "running") {
        setPhase("error");
        if (!refused) showError("The connection to the server closed. Reload the page to try again.");
      }
      st.ws = null;
    });
    return st.wsReady;
  }

  async function start() {
    showError("");
    const s = settings();
    const msg = { type: "start", settings: s };
    let blob = null;
    if (s.kind === "image") {
      if (!st.source) {
        showError("Choose an image first: a sample or an upload.");
        return;
      }
      if (st.source.kind === "sample") {
        msg.source = "sample";
        msg.sample = st.source.name;
      } else {
        blob = st.source.blob;
        msg.source = "upload";
        msg.image_bytes = blob.size;
      }
    }
    setPhase("starting");
    status("Starting…");
    try {
      const ws = await connect();
      ws.send(JSON.stringify(msg));
      if (blob) ws.send(await blob.arrayBuffer());
    } catch (e) {
      setPhase("error");
      showError(e.message);
    }
  }
  startBtn.addEventListener("click", start);
  stopBtn.addEventListener("click", () => {
    if (st.ws && st.ws.readyState === 1) st.ws.send(JSON.stringify({ type: "stop" }));
  });

  function onMessage(m) {
    switch (m.type) {
      case "queued":
        setPhase("queued");
        status(`Waiting: position ${m.position} in line (${m.running} running).`);
        break;
      case "started":
        begin(m);
        break;
      case "point":
        if (m.run !== st.run) return;
        st.points[m.point.index] = m.point;
        st.thumbs[m.point.index] = m.thumb;
        progress(st.points.filter(Boolean).length, st.started.total);
        draw();
        break;
      case "progress":
        if (m.run !== st.run) return;
        st.result = m.result;
        progress(m.done, m.total);
        draw();
        break;
      case "done":
        if (m.run !== st.run) return;
        st.result = m.result;
        st.csv = m.csv;
        st.saveKey = m.saveable ? m.key : null;
        setPhase("done");
        progress(st.started.total, st.started.total);
        draw();
        done(m);
        break;
      case "stopped":
        setPhase("stopped");
        status(m.message || "Stopped.");
        break;
      case "error":
        setPhase("error");
        showError(m.message);
        status("The run did not finish.");
        break;
    }
  }

  function begin(m) {
    st.run = m.run;
    st.started = m;
    st.points = [];
    st.thumbs = [];
    st.result = null;
    st.saveKey = null;
    finish.hidden = true;
    const saved = $(P + "-saved");
    if (saved) saved.textContent = "";
    window.__sweepRenders = [];
    setPhase("running");
    progress(0, m.total);
    draw();
  }

  function progress(done, total) {
    bar.max = Math.max(total, 1);
    bar.value = Math.min(done, bar.max);
    root.dataset.points = String(page === "sweep" && kind() === "image" ? st.points.filter(Boolean).length : done);
    if (st.phase === "running") {
      const what = st.started && st.started.kind === "image" ? "ε values" : "images";
      status(`Running: ${done} of ${total} ${what}.`);
    }
  }

  // --- drawing ------------------------------------------------------------------------

  function epsTick(eps, eps255, range) {
    return (v, i) => {
      const k = eps.indexOf(v);
      const lv = k >= 0 ? eps255[k] : v;
      return [num(v), k >= 0 && range[0] === 0 && range[1] === 1 ? num(lv) + "/255" : ""];
    };
  }
  function epsText(v, k, head) {
    const e255 = head.eps_255[k];
    return head.range[0] === 0 && head.range[1] === 1 ? `ε ${num(v)} (${num(e255)}/255)` : `ε ${num(v)} on [${head.range}] (${num(e255)}/255)`;
  }
  function rangeText(head) { return `[${head.range[0]},${head.range[1]}]`; }

  function draw() {
    const head = st.started;
    if (!head) return;
    if (head.kind === "image") drawImage(head);
    else if (head.kind === "dataset") drawDataset(head);
    else if (head.kind === "compete") drawCompete(head);
    else drawTransfer(head);
    window.__sweepRenders.push(Number(root.dataset.points) || 0);
  }

  function legend(items) {
    const box = $("sw-legend");
    if (!box) return;
    box.replaceChildren(...items.map((it) => {
      const sw = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      sw.setAttribute("width", "40");
      sw.setAttribute("height", "14");
      sw.setAttribute("aria-hidden", "true");
      const ln = document.createElementNS("http://www.w3.org/2000/svg", "line");
      for (const [k, v] of Object.entries({ x1: 2, x2: 38, y1: 7, y2: 7, stroke: it.color, "stroke-width": 3 })) ln.setAttribute(k, v);
      if (it.dash) ln.setAttribute("stroke-dasharray", "8 6");
      sw.append(ln);
      return el("li", { "data-testid": "legend-item" }, sw, " " + it.name);
    }));
  }

  function labelName(head, c) {
    const n = head.labels && head.labels[c];
    return n !== undefined && n !== String(c) ? `${c} (${n})` : String(c);
  }

  function drawImage(head) {
    const defs = head.defences;
    const series = [], markers = [], items = [];
    defs.forEach((d, j) => {
      const color = Chart.palette[j % Chart.palette.length];
      const t = [], w = [];
      let flip = null;
      head.eps.forEach((e, k) => {
        const p = st.points[k];
        if (!p) return;
        const dp = p.defences[j];
        t.push({ x: e, y: dp.true_prob, title: `${d.name}: P(true class ${labelName(head, head.label)}) = ${pct(dp.true_prob)} at ${epsText(e, k, head)}` });
        w.push({ x: e, y: dp.wrong_prob, title: `${d.name}: P(strongest wrong class ${labelName(head, dp.wrong_class)}) = ${pct(dp.wrong_prob)} at ${epsText(e, k, head)}` });
        if (dp.flipped && flip === null) flip = k;
      });
      series.push({ name: d.name + " · true class", color, points: t });
      series.push({ name: d.name + " · strongest wrong class", color, dash: true, points: w });
      if (flip !== null) markers.push({ x: head.eps[flip], color, label: `${d.name} flips at ${epsText(head.eps[flip], flip, head)}` });
      items.push({ name: d.name, color });
    });
    items.push({ name: "solid: the true class · dashed: the strongest wrong class · dotted line under a ▼: the smallest ε that flips a defence", color: "#55606e", dash: true });
    const thumbs = head.eps.map((e, k) => st.thumbs[k] ? { x: e, href: st.thumbs[k], title: `adversarial image at ${epsText(e, k, head)}` } : null);
    Chart.line(chartBox, {
      label: `Probability of the true class and of the strongest wrong class against ε, for ${defs.length} defences`,
      xLabel: `ε on ${rangeText(head)}` + (head.range[1] - head.range[0] === 1 ? " (and in /255 pixel steps)" : ""),
      yLabel: "probability (%)", x: head.eps, xTick: epsTick(head.eps, head.eps_255, head.range),
      yMax: 1, yTicks: [0, 0.2, 0.4, 0.6, 0.8, 1], yFormat: (v) => Math.round(v * 100) + " %",
      series, markers, thumbs,
    });
    legend(items);
    caption.textContent = `${head.settings.attack} on ${(head.settings.models || []).join("+") || "its own"}, ${head.settings.image || "the image"}: true class ${labelName(head, head.label)}. Thumbnails under the axis: the adversarial image at each ε.`;
    // The table: one row per ε, two columns per defence.
    const thead = el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "ε"), ...defs.map((d) => el("th", { scope: "col", colspan: 2 }, d.name))),
      el("tr", {}, el("th", { scope: "col" }, "on " + rangeText(head) + " (/255)"), ...defs.flatMap(() => [el("th", { scope: "col" }, "P(true)"), el("th", { scope: "col" }, "P(strongest wrong) (class)")])));
    const body = el("tbody");
    head.eps.forEach((e, k) => {
      const p = st.points[k];
      if (!p) return;
      body.append(el("tr", { "data-testid": "sweep-row" }, el("th", { scope: "row" }, `${num(e)} (${num(head.eps_255[k])})`),
        ...p.defences.flatMap((dp) => [el("td", { class: dp.flipped ? "flipped" : null }, pct(dp.true_prob)), el("td", {}, `${pct(dp.wrong_prob)} (${labelName(head, dp.wrong_class)})`)])));
    });
    table.replaceChildren(el("caption", {}, "Each defence's probability of the true class and of the strongest wrong class; a flipped defence's cell is marked."), thead, body);
    // The flip summary.
    const flips = $("sw-flips");
    const lis = defs.map((d, j) => {
      const k = head.eps.findIndex((_, i) => st.points[i] && st.points[i].defences[j].flipped);
      return el("li", { "data-testid": "flip", "data-defence": d.name }, el("strong", {}, d.name + ": "),
        k >= 0 ? "flips at " + epsText(head.eps[k], k, head) : "not flipped" + (st.phase === "done" ? " up to " + epsText(head.eps.at(-1), head.eps.length - 1, head) : " yet"));
    });
    flips.replaceChildren(el("h2", {}, "The smallest ε that flips each defence"), el("ul", {}, ...lis));
    flips.hidden = false;
  }

  function drawDataset(head) {
    const r = st.result;
    const defs = head.defences;
    const series = [], items = [];
    defs.forEach((d, j) => {
      const color = Chart.palette[j % Chart.palette.length];
      const c = r && r.defences[j];
      const pts = c ? head.eps.map((e, k) => ({ x: e, y: c.accuracy[k], title: `${d.name}: ${pct(c.accuracy[k])} robust accuracy (${c.correct[k]} of ${r.n}) at ${epsText(e, k, head)}` })) : [];
      series.push({ name: d.name, color, points: pts, dash: j >= Chart.palette.length });
      items.push({ name: d.name, color, dash: j >= Chart.palette.length });
    });
    Chart.line(chartBox, {
      label: `Robust accuracy against ε for ${defs.length} defences`,
      xLabel: `ε on ${rangeText(head)}` + (head.range[1] - head.range[0] === 1 ? " (and in /255 pixel steps)" : ""),
      yLabel: "robust accuracy (%)", x: head.eps, xTick: epsTick(head.eps, head.eps_255, head.range),
      yMax: 1, yTicks: [0, 0.2, 0.4, 0.6, 0.8, 1], yFormat: (v) => Math.round(v * 100) + " %", series,
    });
    legend(items);
    const n = r ? r.n : 0;
    const count = st.phase === "done" && n === head.total ? `the first ${n} MNIST test images` : `${n} of ${head.total} MNIST test images so far`;
    caption.textContent = `Robust accuracy of each defence under ${head.settings.attack} on ${(head.settings.models || []).join("+") || "its own"}: ${count}.`;
    const thead = el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "ε on " + rangeText(head) + " (/255)"), ...defs.map((d) => el("th", { scope: "col" }, d.name))));
    const body = el("tbody");
    if (r) {
      head.eps.forEach((e, k) => body.append(el("tr", { "data-testid": "sweep-row" }, el("th", { scope: "row" }, `${num(e)} (${num(head.eps_255[k])})`),
        ...r.defences.map((c) => el("td", {}, `${pct(c.accuracy[k])} (${c.correct[k]})`)))));
    }
    table.replaceChildren(el("caption", {}, `Robust accuracy (correct answers) on ${n} images.`), thead, body);
  }

  function drawCompete(head) {
    const m = st.result;
    if (!m || !m.attacks) {
      caption.textContent = `${head.attacks.length} attacks against ${head.defences.length} defences: waiting for the first batch.`;
      return;
    }
    const rows = m.attacks.map((a) => ({ name: a.name, note: `score ${a.score}, rank ${a.rank}` }));
    const cols = m.defences.map((d) => ({ name: d.name, note: `score ${d.score}, rank ${d.rank}` }));
    const share = m.misclassified.map((r) => r.map((v) => v / Math.max(m.n, 1)));
    const text = m.misclassified.map((r) => r.map((v) => String(v)));
    const tip = m.misclassified.map((r, i) => r.map((v, j) => `${m.attacks[i].name} against ${m.defences[j].name}: ${v} of ${m.n} images misclassified (${pct(v / Math.max(m.n, 1))})`));
    Chart.heatmap(chartBox, {
      label: `Misclassifications of ${m.n} images: ${rows.length} attacks (rows) against ${cols.length} defences (columns)`,
      rowsLabel: "attack", colsLabel: "defence", rows, cols, share, text, tip,
      rowEnd: m.attacks.map((a) => `${a.score} · #${a.rank}`), colEnd: m.defences.map((d) => [String(d.score), "#" + d.rank]),
    });
    const epsSet = head.eps.map((e, k) => epsText(e, k, head)).join(", ");
    caption.textContent = `Cells: images the defence got wrong after the attack, of ${m.n} (darker: more). Right: each attack's score (misclassifications summed over defences) and rank; below: each defence's score (correct answers summed over attacks) and rank. Each batch of ${m.batch_images} draws its ε from {${epsSet}}; drawn${st.phase === "done" ? "" : " so far"}: ${m.batch_eps.map(num).join(", ")}.`;
    const ranks = $("mx-ranks");
    const ol = (title, es, what) => el("section", {}, el("h2", {}, title),
      el("ol", {}, ...es.slice().sort((a, b) => a.rank - b.rank || b.score - a.score).map((e) => el("li", { "data-testid": "rank", "data-name": e.name }, el("strong", {}, `#${e.rank} ${e.name}`), ` — ${e.score} ${what} (${pct(e.rate)})`))));
    ranks.replaceChildren(ol("Attacks by score", m.attacks, "misclassifications"), ol("Defences by score", m.defences, "correct answers"));
    ranks.hidden = false;
    const thead = el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "attack \\ defence"), ...m.defences.map((d) => el("th", { scope: "col" }, d.name)), el("th", { scope: "col" }, "score"), el("th", { scope: "col" }, "rank")));
    const body = el("tbody", {}, ...m.attacks.map((a, i) => el("tr", { "data-testid": "matrix-row" }, el("th", { scope: "row" }, a.name),
      ...m.misclassified[i].map((v) => el("td", {}, String(v))), el("td", {}, String(a.score)), el("td", {}, "#" + a.rank))));
    const foot = el("tfoot", {}, el("tr", {}, el("th", { scope: "row" }, "defence score"), ...m.defences.map((d) => el("td", {}, String(d.score))), el("td"), el("td")),
      el("tr", {}, el("th", { scope: "row" }, "defence rank"), ...m.defences.map((d) => el("td", {}, "#" + d.rank)), el("td"), el("td")),
      el("tr", {}, el("th", { scope: "row" }, "clean correct"), ...m.defences.map((d) => el("td", {}, String(d.clean_correct || 0))), el("td"), el("td")));
    table.replaceChildren(el("caption", {}, `Images misclassified, of ${m.n}.`), thead, body, foot);
  }

  function drawTransfer(head) {
    const t = st.result;
    if (!t || !t.sources) {
      caption.textContent = `${head.attacks.length} sources against ${head.defences.length} targets: waiting for the first batch.`;
      return;
    }
    const rows = t.sources.map((s) => ({ name: s.name }));
    const cols = t.targets.map((c) => ({ name: c.name, note: `clean accuracy ${pct(c.clean_accuracy)}` }));
    const text = t.rate.map((r) => r.map((v) => Math.round(v * 100) + "%"));
    const tip = t.rate.map((r, i) => r.map((v, j) => `crafted on ${t.sources[i].name}, shown to ${t.targets[j].name}: fools it on ${t.fooled[i][j]} of the ${t.targets[j].clean_correct} images it gets right (${pct(v)})`));
    Chart.heatmap(chartBox, {
      label: `Transfer success at ε ${num(t.eps)}: ${rows.length} sources (rows) against ${cols.length} targets (columns)`,
      rowsLabel: "source", colsLabel: "target", rows, cols, share: t.rate, text, tip,
      colEnd: t.targets.map((c) => ["clean", Math.round(c.clean_accuracy * 100) + "%"]),
    });
    caption.textContent = `Cells: the share of the images a target classifies correctly that it gets wrong after the source's attack (${head.settings.attack}, ${epsText(head.eps[0], 0, head)}), on ${t.n} of ${head.total} images. The diagonal is the white-box attack; below: each target's clean accuracy.`;
    const thead = el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "source \\ target"), ...t.targets.map((c) => el("th", { scope: "col" }, c.name))));
    const body = el("tbody", {}, ...t.sources.map((s, i) => el("tr", { "data-testid": "matrix-row" }, el("th", { scope: "row" }, s.name),
      ...t.rate[i].map((v, j) => el("td", {}, `${pct(v)} (${t.fooled[i][j]}/${t.targets[j].clean_correct})`)))));
    const foot = el("tfoot", {}, el("tr", {}, el("th", { scope: "row" }, "clean accuracy"), ...t.targets.map((c) => el("td", {}, pct(c.clean_accuracy)))));
    table.replaceChildren(el("caption", {}, `Transfer success (fooled / correct when clean) at ε ${num(t.eps)}.`), thead, body, foot);
  }

  // --- the end of a run ----------------------------------------------------------------

  function blobURL(key, data, type) {
    if (st.urls[key]) URL.revokeObjectURL(st.urls[key]);
    st.urls[key] = URL.createObjectURL(new Blob([data], { type }));
    return st.urls[key];
  }

  function done(m) {
    const secs = m.seconds.toFixed(1);
    status(`Done in ${secs} s.`);
    finish.hidden = false;
    const base = `gibbon-${m.kind}-seed${st.started.settings.seed}`;
    const csv = $(P + "-csv");
    csv.href = blobURL("csv", m.csv, "text/csv");
    csv.download = base + ".csv";
    const js = $(P + "-json");
    js.href = blobURL("json", JSON.stringify(m.result, null, 2), "application/json");
    js.download = base + ".json";
    $(P + "-command").textContent = "On the command line: " + m.command;
    $(P + "-summary").textContent = summary(m);
    const form = $(P + "-save-form");
    if (form) form.hidden = !st.saveKey;
    if (m.no_save) $(P + "-saved").textContent = m.no_save;
  }

  function summary(m) {
    const r = m.result;
    switch (m.kind) {
      case "image": {
        const f = r.defences.filter((d) => d.flip_eps !== null).length;
        return `${f} of ${r.defences.length} defences flipped within ε ${num(r.eps.at(-1))}; ${r.points.length} ε values in ${m.seconds.toFixed(1)} s.`;
      }
      case "dataset":
        return `${r.n} images × ${r.eps.length} ε values in ${r.wall_seconds.toFixed(1)} s (${r.images_per_second.toFixed(1)} images/s, ${(r.images_per_second * r.eps.length).toFixed(0)} image·ε/s).`;
      case "compete": {
        const best = (es) => es.filter((e) => e.rank === 1).map((e) => e.name).join(", ");
        return `Best attack: ${best(r.attacks)}. Best defence: ${best(r.defences)}. ${r.n} images in ${r.wall_seconds.toFixed(1)} s.`;
      }
      default:
        return `${r.sources.length} sources × ${r.targets.length} targets on ${r.n} images in ${r.wall_seconds.toFixed(1)} s.`;
    }
  }

  const saveForm = $(P + "-save-form");
  if (saveForm) {
    saveForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!st.saveKey) return;
      const out = $(P + "-saved");
      const body = { title: $(P + "-title").value.trim() };
      out.textContent = "Saving…";
      try {
        const resp = await fetch("/api/runs/" + st.saveKey + "/save", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) });
        const res = await resp.json().catch(() => ({}));
        if (!resp.ok) throw new Error(res.error || "The gallery refused the entry (HTTP " + resp.status + ").");
        st.saveKey = null;
        out.replaceChildren("Saved: ", el("a", { href: res.permalink, "data-testid": P + "-permalink" }, res.permalink),
          " · keep this link to delete it: ", el("a", { href: res.delete_url }, "delete"));
      } catch (e) {
        out.textContent = e.message;
      }
    });
  }

  // --- a saved entry ---------------------------------------------------------------------

  async function loadSaved() {
    const url = root.dataset.entryUrl;
    if (!url) return;
    try {
      const resp = await fetch(url);
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const e = await resp.json();
      const r = e.payload;
      const params = e.params || {};
      const list = (v, alt) => (Array.isArray(v) ? v : alt || [v]);
      const head = { kind: params.kind, settings: params, range: r.range, eps: list(r.eps, r.eps_set), eps_255: list(r.eps_255, r.eps_set_255),
        defences: r.defences || r.targets || [], attacks: (r.attacks || r.sources || []).map((a) => a.name), total: r.total || (r.points || []).length,
        label: r.label, labels: null };
      st.started = head;
      st.result = r;
      if (head.kind === "image") {
        (r.points || []).forEach((p) => { st.points[p.index] = p; });
      }
      setPhase("saved");
      draw();
      status(`Showing the saved results of ${e.title || e.slug}. Press ${startBtn.textContent} to run it again.`);
    } catch (err) {
      showError("The saved results could not be loaded: " + err.message);
    }
    // A saved image sweep re-runs on its stored clean image.
    const img = root.dataset.imageUrl;
    if (img) {
      try {
        const resp = await fetch(img);
        const blob = await resp.blob();
        chooseSource({ kind: "upload", blob, name: (st.started && st.started.settings.image) || "saved.png" }, URL.createObjectURL(blob), "The saved run's image");
      } catch {
        /* the samples remain */
      }
    }
  }
  loadSaved();

  // Redraw on resize (the chart fits its box).
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(draw, 150);
  });
})();
