// The live attack explorer (views/attack.templ). One websocket per page carries
// every run: a start message (and the image, as one binary message) goes up;
// started/frame messages come down as binary (a 4-byte JSON length, the JSON, then
// the PNGs it lists), the others as JSON text. The frames a run sends are kept in
// the page, so a finished run can be replayed step by step. No inline scripts (CSP).
"use strict";

(function () {
  const root = document.getElementById("explorer");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const maxUpload = Number(root.dataset.maxUpload) || 0;
  const chart = window.GibbonExplorerChart;
  const errorBox = $("ax-error");
  const statusLine = $("ax-status");
  const startBtn = $("ax-start");
  const stopBtn = $("ax-stop");
  // Frames kept for the replay: a long run on large images keeps every other one
  // once they pass this many bytes.
  const keepBytes = 48 << 20;

  const st = {
    source: null, // {kind: "sample", name, label} | {kind: "upload"|"drawing", blob, name} | {kind: "gallery", entry}
    checking: 0, // bumps with every chosen file: only the newest check counts
    ws: null,
    wsReady: null,
    phase: "idle", // idle, starting, queued, running, done, stopped, error
    run: 0,
    clickedAt: 0,
    firstFrameMs: null,
    frames: 0,
    points: [], // by recorded step: {seq, loss, conf: [guess per defence]}
    started: null, // the started message
    kept: [], // frames kept for the replay
    keptBytes: 0,
    shown: null, // the kept frame on screen
    urls: {},
    saveKey: null, // the finished run's key: the server saves what it computed
    firstRun: true,
    paceTouched: false,
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
  const plural = (n, one, many) => n + " " + (n === 1 ? one : many);

  // Blob URLs are revoked when replaced, so a long run does not pile them up.
  function setImage(img, key, blob) {
    if (st.urls[key]) URL.revokeObjectURL(st.urls[key]);
    st.urls[key] = URL.createObjectURL(blob);
    img.src = st.urls[key];
    img.hidden = false;
    const ph = document.querySelector('.ax-placeholder[data-for="' + img.id + '"]');
    if (ph) ph.hidden = true;
  }
  function clearImage(img) {
    img.removeAttribute("src");
    img.hidden = true;
    const ph = document.querySelector('.ax-placeholder[data-for="' + img.id + '"]');
    if (ph) ph.hidden = false;
  }

  // --- the image ---------------------------------------------------------------

  const preview = $("ax-source-preview");
  const sourceLabel = $("ax-source-label");
  const oodBox = $("ax-ood");
  const sampleButtons = Array.from(document.querySelectorAll("[data-sample]"));

  function chooseSource(src, url, label) {
    st.source = src;
    sampleButtons.forEach((b) => b.setAttribute("aria-pressed", String(src.kind === "sample" && b.dataset.sample === src.name)));
    if (st.urls.preview && st.urls.preview !== url) URL.revokeObjectURL(st.urls.preview);
    st.urls.preview = src.kind === "upload" || src.kind === "drawing" ? url : null;
    preview.src = url;
    preview.hidden = false;
    preview.alt = label;
    sourceLabel.textContent = label;
    showError("");
  }

  // showOOD says how far the chosen image lies from MNIST's digits (the server's
  // measure, in the classify answer), and warns when it lies outside them.
  function showOOD(res) {
    const d = res && res.mnist;
    oodBox.hidden = !d;
    if (!d) return;
    oodBox.classList.toggle("unlike", d.unlike);
    oodBox.dataset.distance = d.distance.toFixed(2);
    oodBox.replaceChildren(
      el("p", { class: "ood-verdict", "data-testid": "ood-verdict" }, d.verdict),
      el("p", { class: "hint" }, d.explain));
  }

  sampleButtons.forEach((b) =>
    b.addEventListener("click", () => {
      const img = b.querySelector("img");
      st.checking++;
      oodBox.hidden = true;
      chooseSource({ kind: "sample", name: b.dataset.sample, label: b.dataset.label }, img.src, "Sample digit " + b.dataset.label);
    }));

  // checkImage has the server decode and classify a file when it is chosen: a
  // file it cannot use is refused now, with its reason, not at Start.
  async function checkImage(blob, name, drawing) {
    const fd = new FormData();
    fd.append("image", blob, name);
    if (drawing) fd.append("source", "drawing");
    const resp = await fetch("/api/classify", {
      method: "POST", body: fd, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    });
    const body = await resp.json().catch(() => null);
    if (!resp.ok) throw new Error((body && body.error) || "the server answered " + resp.status + ".");
    return body;
  }

  async function chooseFile(blob, name, kind, label) {
    const mine = ++st.checking;
    root.dataset.checking = "true";
    try {
      const res = await checkImage(blob, name, kind === "drawing");
      if (mine !== st.checking) return;
      chooseSource({ kind: kind, blob: blob, name: name }, URL.createObjectURL(blob), label);
      showOOD(res);
    } catch (e) {
      if (mine !== st.checking) return;
      if (kind === "upload") fileInput.value = "";
      showError((kind === "drawing" ? "The drawing cannot be used: " : "“" + name + "” cannot be used: ") + e.message);
    } finally {
      if (mine === st.checking) root.dataset.checking = "false";
    }
  }

  const fileInput = $("ax-file");
  fileInput.addEventListener("change", () => {
    const f = fileInput.files[0];
    if (!f) return;
    if (maxUpload && f.size > maxUpload) {
      showError("“" + f.name + "” is larger than the " + root.dataset.maxUploadLabel + " upload limit. Choose a smaller image.");
      fileInput.value = "";
      return;
    }
    chooseFile(f, f.name, "upload", "Upload “" + f.name + "”");
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
      if (blob) chooseFile(blob, "drawing.png", "drawing", "Your drawing");
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
  const seedIn = $("ax-seed");
  const alphaIn = $("ax-alpha");
  const restartsIn = $("ax-restarts");
  const throughSel = $("ax-through");
  const eotIn = $("ax-eot");
  const momentumIn = $("ax-momentum");
  const lossSel = $("ax-loss-kind");
  const leastLikely = $("ax-least-likely");
  const surrogateBoxes = Array.from(document.querySelectorAll('input[name="surrogate"]'));
  const watchBoxes = Array.from(document.querySelectorAll('input[name="watch"]'));
  const transformRows = Array.from(document.querySelectorAll(".ax-transform"));
  const maxEps = Number(epsIn.max);

  function epsText(k) {
    return k + "/255 = " + (k / 255).toFixed(3);
  }
  function gain() {
    return Math.pow(2, Number(gainIn.value));
  }
  function isNetwork() {
    return attackSel.value.startsWith("net:");
  }
  // Attacks that set their own step size and loss (Croce and Hein's), those that
  // restart, and those that pick their own target classes.
  const selfTuned = ["apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "autoattack"];
  const restartable = ["pgd", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t"];
  const ownTargets = ["apgd-t", "fab-t", "autoattack"];
  function heads() {
    const opt = attackSel.selectedOptions[0];
    return opt ? JSON.parse(opt.dataset.heads || "null") || [] : [];
  }
  function chosenSurrogates() {
    return surrogateBoxes.filter((b) => b.checked && !b.disabled);
  }
  // nearestHead is the head closest to k: an attack network runs only at its heads.
  function nearestHead(k) {
    return heads().reduce((best, h) => (Math.abs(h - k) < Math.abs(best - k) ? h : best), heads()[0]);
  }

  // The ε slider snaps to an attack network's heads (the network has no other
  // budgets) and says so; for the other attacks it moves in 1/255 steps.
  function updateEps() {
    const hs = heads();
    const list = $("ax-eps-heads");
    if (isNetwork() && hs.length) {
      epsIn.min = String(Math.min(...hs));
      epsIn.max = String(Math.max(...hs));
      epsIn.value = String(nearestHead(Number(epsIn.value)));
      list.replaceChildren(...hs.map((h) => el("option", { value: h })));
      $("ax-eps-note").textContent = "This network has one head per ε: " + hs.map((h) => h + "/255").join(", ") +
        ". The slider snaps to them.";
    } else {
      epsIn.min = "1";
      epsIn.max = String(maxEps);
      list.replaceChildren();
      $("ax-eps-note").textContent = "How far each pixel may move, in 1/255 steps of the pixel range.";
    }
    $("ax-eps-out").textContent = epsText(Number(epsIn.value));
  }
  epsIn.addEventListener("input", () => {
    if (isNetwork() && heads().length) epsIn.value = String(nearestHead(Number(epsIn.value)));
  });

  // defaultAlpha is the step size the attack takes when α is left empty, in /255:
  // the command line's defaults (PGD 2.5ε/steps, FGSM ε, the others ε/steps).
  function defaultAlpha() {
    const eps = Number(epsIn.value), steps = Math.max(1, Number(stepsIn.value) || 1);
    switch (attackSel.value) {
      case "fgsm": return eps;
      case "pgd": return (2.5 * eps) / steps;
      default: return eps / steps;
    }
  }

  // updateThrough lists the watched transform defences one can attack through.
  function updateThrough() {
    const keep = throughSel.value;
    throughSel.replaceChildren(el("option", { value: "" }, "No: attack the models themselves"));
    transformRows.forEach((row, i) => {
      if (!row.querySelector('input[type="checkbox"]').checked) return;
      const model = row.querySelector('[data-role="model"]').value;
      const label = row.querySelector(".ax-check").textContent.trim();
      const param = row.querySelector('[data-role="param"]').value;
      throughSel.append(el("option", { value: String(i) }, `${model} + ${label} (${param})`));
    });
    throughSel.value = [...throughSel.options].some((o) => o.value === keep) ? keep : "";
    throughSel.disabled = isNetwork() || throughSel.options.length < 2;
    const row = throughSel.value === "" ? null : transformRows[Number(throughSel.value)];
    eotIn.disabled = !row || row.dataset.defence !== "resize-pad";
  }

  // updateAdvanced enables the advanced options the chosen attack takes.
  function updateAdvanced() {
    updateThrough();
    const m = attackSel.value;
    const net = isNetwork(), blackBox = m === "square" || m === "noise";
    const tuned = selfTuned.includes(m);
    alphaIn.disabled = net || blackBox || tuned;
    restartsIn.disabled = !restartable.includes(m);
    momentumIn.disabled = m !== "mi-fgsm" && m !== "m-di2-fgsm";
    lossSel.disabled = net || blackBox || tuned;
    leastLikely.disabled = net || ownTargets.includes(m);
    seedIn.disabled = false;
    const a = defaultAlpha();
    alphaIn.placeholder = "default " + chart.num(a);
    $("ax-alpha-note").textContent = alphaIn.disabled ? (net ? "An attack network takes no steps." : tuned ? "This attack sets its own step size." : "Black-box attacks take no step size.")
      : "Empty: " + (m === "pgd" ? "2.5ε/steps" : m === "fgsm" ? "ε" : "ε/steps") + " = " + chart.num(a) + "/255.";
    const off = [];
    if (restartsIn.disabled) off.push("restarts (PGD, APGD and FAB-T only)");
    if (momentumIn.disabled) off.push("momentum (MI-FGSM and M-DI²-FGSM only)");
    if (lossSel.disabled) off.push(tuned ? "loss (its own)" : "loss");
    if (ownTargets.includes(m)) off.push("target class (it aims at the likeliest wrong classes in turn)");
    $("ax-advanced-note").textContent = off.length ? "Not used by " + attackSel.selectedOptions[0].textContent + ": " + off.join(", ") + "." : "";
  }

  function updateSettings() {
    const opt = attackSel.selectedOptions[0];
    $("ax-attack-note").textContent = opt ? opt.dataset.note || "" : "";
    updateEps();
    const m = attackSel.value;
    $("ax-steps-label").textContent = m === "square" ? "Queries" : m === "noise" ? "Draws" : "Steps";
    stepsIn.disabled = m === "fgsm" || isNetwork();
    const pace = Number(paceIn.value);
    $("ax-pace-out").textContent = pace ? pace + " ms per step" : "off";
    $("ax-gain-out").textContent = "×" + gain();
    surrogateBoxes.forEach((b) => (b.disabled = isNetwork()));
    targeted.disabled = isNetwork() || leastLikely.checked || ownTargets.includes(m);
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
    updateAdvanced();
  }
  // The defences one can attack through follow the transforms watched.
  [throughSel, ...transformRows.flatMap((row) => [...row.querySelectorAll("input, select")])].forEach((x) => {
    x.addEventListener("input", updateThrough);
    x.addEventListener("change", updateThrough);
  });
  [attackSel, epsIn, stepsIn, targeted, paceIn, leastLikely, alphaIn, ...surrogateBoxes].forEach((x) => {
    x.addEventListener("input", updateSettings);
    x.addEventListener("change", updateSettings);
  });
  paceIn.addEventListener("input", () => (st.paceTouched = true));

  // A visit's first run plays in slow motion: PGD on the small models is over
  // in half a second, too fast to see it work.
  const visitKey = "gibbon.explorer.ran";
  function visited() {
    try {
      return sessionStorage.getItem(visitKey) === "1";
    } catch (e) {
      return false;
    }
  }
  const firstPace = Number(root.dataset.firstPace) || 0;
  if (!visited() && firstPace > 0) {
    paceIn.value = String(firstPace);
    $("ax-pace-note").textContent = "On for your first run, to watch each step; set it to off for full speed.";
  } else {
    st.firstRun = false;
  }
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
    else if (head.type === "perturbation" && images.perturbation) {
      const last = st.kept[st.kept.length - 1];
      if (last) {
        last.pert = images.perturbation.blob;
        last.gain = head.gain;
      }
      if (st.shown === last) setImage($("ax-pert"), "pert", images.perturbation.blob);
    }
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
    if (leastLikely.checked && !leastLikely.disabled) msg.target_mode = "least-likely";
    else if (targeted.checked && !targeted.disabled) msg.target = Number(targetSel.value);
    if (seedIn.value !== "") msg.seed = Number(seedIn.value);
    if (!alphaIn.disabled && alphaIn.value !== "") msg.alpha = Number(alphaIn.value);
    // Defaults are left out, so that the recorded plan says "default" as the
    // command line's does.
    if (!restartsIn.disabled && Number(restartsIn.value) > 1) msg.restarts = Number(restartsIn.value);
    if (!momentumIn.disabled && momentumIn.value !== "" && Number(momentumIn.value) !== 1) msg.momentum = Number(momentumIn.value);
    if (!lossSel.disabled && lossSel.value !== "ce") msg.loss = lossSel.value;
    transformRows.forEach((row, i) => {
      const box = row.querySelector('input[type="checkbox"]');
      if (!box.checked) return;
      if (!throughSel.disabled && throughSel.value === String(i)) {
        msg.through = msg.watch.length;
        if (row.dataset.defence === "resize-pad" && Number(eotIn.value) !== 10) msg.eot_samples = Number(eotIn.value);
      }
      msg.watch.push({
        model: row.querySelector('[data-role="model"]').value,
        defence: row.dataset.defence,
        param: Number(row.querySelector('[data-role="param"]').value),
      });
    });
    const src = st.source;
    msg.source = src.kind;
    if (src.kind === "sample") msg.sample = src.name;
    else if (src.kind === "gallery") msg.entry = src.entry;
    else {
      msg.image_bytes = src.blob.size;
      msg.filename = src.name;
    }
    return msg;
  }

  startBtn.addEventListener("click", async () => {
    showError("");
    if (root.dataset.checking === "true") {
      showError("The chosen image is still being checked: press Start again in a moment.");
      return;
    }
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
      sessionStorage.setItem(visitKey, "1");
    } catch (e) {
      // private windows may refuse storage: every run is then a first one
    }
    try {
      const ws = await socket();
      ws.send(JSON.stringify(msg));
      if (st.source.blob) ws.send(st.source.blob);
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
    // the new run has shown no frame and taken no step yet: the last run's counts go
    root.dataset.frames = "0";
    delete root.dataset.taken;
    st.points = [];
    st.started = m;
    st.kept = [];
    st.keptBytes = 0;
    st.shown = null;
    st.saveKey = null;
    setPhase("running");
    $("ax-finish").hidden = true;
    $("ax-replay").hidden = true;
    $("ax-saved").textContent = "";
    if (images.clean) setImage($("ax-clean"), "clean", images.clean.blob);
    showCrop(m, images.clean ? images.clean.meta : null);
    clearImage($("ax-adv"));
    clearImage($("ax-pert"));
    $("ax-step").textContent = "";
    $("ax-heads").hidden = true;
    $("ax-heads").replaceChildren();
    const net = m.attack.startsWith("net:");
    $("ax-curve").hidden = net;
    $("ax-conf-panel").hidden = net;
    $("ax-head-verdicts").hidden = !net;
    let what = m.attack_label + (m.surrogates && m.surrogates.length ? " on " + m.surrogates.join(" + ") : "") + ", ε " + m.eps_label;
    if (m.target_label) what += ", target “" + m.target_label + "”";
    status("Running " + what + " (seed " + m.seed + ")…");
    renderDefences(m.defences, null);
    confCanvases(m.defences);
    drawCharts();
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

  // stepText says where a frame is: "step 12 of 40", "query 37", "final, step 40 of 40".
  function stepText(f) {
    if (st.started && st.started.attack.startsWith("net:")) return "one forward pass";
    let what = f.queries ? "query " + f.queries : "step " + f.step + " of " + f.steps;
    if (f.stage) what = f.stage.toUpperCase() + " " + what;
    if (f.stopped) return "stopped at " + what;
    return f.final ? "final, " + what : what;
  }

  function onFrame(f, images) {
    if (f.run !== st.run) return;
    if (st.frames === 0) {
      st.firstFrameMs = performance.now() - st.clickedAt;
      root.dataset.firstFrameMs = st.firstFrameMs.toFixed(1);
    }
    st.frames++;
    root.dataset.frames = String(st.frames);
    (f.loss || []).forEach((v, i) => {
      st.points[f.loss_from + i] = { seq: f.loss_seq[i], loss: v === null ? NaN : v, conf: (f.conf || [])[i] || [] };
    });
    const kept = {
      seq: f.seq, step: f.step, steps: f.steps, stage: f.stage, queries: f.queries, final: !!f.final, stopped: !!f.stopped,
      linf: f.linf, l2: f.l2, pred: f.pred, chosen: f.chosen, gain: f.gain, defences: f.defences, heads: f.heads || [],
      adv: images.adv ? images.adv.blob : null, pert: images.perturbation ? images.perturbation.blob : null,
      headImages: Object.keys(images).filter((k) => k.startsWith("head")).map((k) => images[k]),
      timing: f.timing || {},
    };
    keep(kept);
    show(kept, true);
  }

  // keep stores a frame for the replay; past keepBytes every other earlier frame
  // goes (the final one stays).
  function keep(k) {
    const size = (k.adv ? k.adv.size : 0) + (k.pert ? k.pert.size : 0) + k.headImages.reduce((s, h) => s + h.blob.size, 0);
    if (k.stopped && st.kept.length && st.kept[st.kept.length - 1].seq === k.seq) st.kept.pop();
    st.kept.push(k);
    st.keptBytes += size;
    if (st.keptBytes > keepBytes && st.kept.length > 4) {
      st.kept = st.kept.filter((x, i) => i % 2 === 0 || i === st.kept.length - 1);
      st.keptBytes = Math.round(st.keptBytes / 2);
    }
  }

  // show puts a kept frame on screen: images, heads, every defence's verdict.
  function show(k, live) {
    st.shown = k;
    if (k.adv) setImage($("ax-adv"), "adv", k.adv);
    if (k.pert) setImage($("ax-pert"), "pert", k.pert);
    $("ax-step").textContent = "(" + stepText(k) + ")";
    let metrics = "L∞ " + k.linf + "/255 · L2 " + k.l2.toFixed(3);
    if (k.pred) metrics += " · attacked model says " + k.pred;
    if (k.chosen) metrics += " · defences see head " + k.chosen;
    const t = k.timing;
    if (live && t.step_ms) metrics += " · " + t.step_ms.toFixed(1) + " ms/step";
    if (live && t.verdict_ms !== undefined) metrics += " · defences " + t.verdict_ms.toFixed(1) + " ms";
    const where = providersText(t.providers);
    if (where) metrics += " · " + where;
    if (live) root.dataset.providers = JSON.stringify(t.providers || []);
    $("ax-metrics").textContent = metrics;
    renderHeads(k);
    renderDefences(st.started.defences, k.defences);
    scheduleCharts();
  }

  function renderHeads(k) {
    const box = $("ax-heads");
    if (!k.headImages.length) return;
    box.hidden = false;
    box.replaceChildren(...k.headImages.map((h) => {
      const img = el("img", { class: "pixelated", width: 112, height: 112, alt: "Head " + h.meta.label + ", L∞ " + h.meta.linf + "/255" });
      img.src = URL.createObjectURL(h.blob);
      img.onload = () => URL.revokeObjectURL(img.src);
      return el("figure", {}, img, el("figcaption", {}, h.meta.label + " · L∞ " + h.meta.linf + "/255"));
    }));
    renderHeadTable(k);
  }

  // renderHeadTable shows every head's verdict from every defence: what the
  // attack network did, in place of a loss it does not have.
  function renderHeadTable(k) {
    const table = $("ax-head-table");
    const defs = st.started.defences;
    const thead = el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "head"), ...defs.map((d) => el("th", { scope: "col" }, d.name))));
    const body = el("tbody", {}, ...k.heads.map((h) => el("tr", { "data-testid": "head-row", "data-chosen": String(!!h.chosen) },
      el("th", { scope: "row" }, h.label + (h.chosen ? " (shown)" : ""), el("br"), el("span", { class: "hint" }, "L∞ " + h.linf + "/255")),
      ...defs.map((d, i) => {
        const s = h.defences[i] || {};
        const top = s.top && s.top[0];
        return el("td", { class: s.flipped ? "flipped" : null, "data-testid": "head-verdict" },
          top ? top.label + " · " + percent(top.probability) : s.error || "—", s.flipped ? " (flipped)" : "");
      }))));
    table.replaceChildren(el("caption", {}, "Each defence's top class on each head's image; flipped: it changed from the clean image."), thead, body);
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

  // --- the charts ------------------------------------------------------------------------

  // confCanvases makes one small confidence chart per watched defence.
  function confCanvases(defs) {
    $("ax-conf").replaceChildren(...defs.map((d, i) => el("figure", { class: "ax-conf-item", "data-testid": "confidence-chart", "data-name": d.name },
      el("figcaption", {}, d.name),
      el("canvas", { width: 260, height: 110, role: "img", "aria-label": d.name + ": no steps yet", "data-index": i }))));
  }

  let chartsQueued = false;
  function scheduleCharts() {
    if (chartsQueued) return;
    chartsQueued = true;
    requestAnimationFrame(() => {
      chartsQueued = false;
      drawCharts();
    });
  }

  // xmax is the charts' last step: the steps asked while running, the steps run
  // once it ended (a stopped run's curve fills the chart, not its left part).
  function xmax() {
    const pts = st.points.filter(Boolean);
    const lastSeq = pts.length ? pts[pts.length - 1].seq : 0;
    const ended = st.phase === "done" || st.phase === "stopped";
    if (ended || !st.started) return Math.max(lastSeq, 1);
    return Math.max(lastSeq, st.started.steps, 1);
  }

  function drawCharts() {
    const at = st.shown && (st.phase === "done" || st.phase === "stopped") ? st.shown.seq : null;
    const pts = st.points.filter(Boolean);
    const xm = xmax();
    chart.loss($("ax-loss"), pts, xm, at);
    if (!st.started) return;
    document.querySelectorAll("#ax-conf canvas").forEach((c) => {
      const i = Number(c.dataset.index);
      const d = st.started.defences[i];
      const series = pts.map((p) => {
        const gs = p.conf[i];
        if (!gs || !gs.label) return null;
        return { seq: p.seq, prob: gs.prob, trueProb: gs.true_prob === undefined ? NaN : gs.true_prob, label: gs.label };
      });
      chart.confidence(c, d.name, st.started.label_name, series, xm, at);
    });
  }
  window.addEventListener("resize", scheduleCharts);
  drawCharts();

  // --- the replay --------------------------------------------------------------------------

  const scrub = $("ax-scrub");
  function armReplay() {
    const kept = st.kept.length;
    if (kept < 2) return; // one frame (an attack network's pass) has nothing to replay
    scrub.max = String(kept - 1);
    scrub.value = String(kept - 1);
    $("ax-replay").hidden = false;
    const recorded = st.points.filter(Boolean).length;
    $("ax-scrub-note").textContent = kept + " of the run's " + plural(recorded, "recorded step", "recorded steps") + " are kept here" +
      (recorded > kept ? "; the others were skipped to keep up (slow motion keeps every one)" : "") + ". The charts mark the step shown.";
    scrubbed();
  }
  function scrubbed() {
    const k = st.kept[Number(scrub.value)];
    if (!k) return;
    show(k, false);
    $("ax-scrub-out").textContent = stepText(k);
    if (k.gain !== gain()) $("ax-scrub-out").textContent += " · perturbation at gain ×" + k.gain;
  }
  scrub.addEventListener("input", scrubbed);

  // --- the end ----------------------------------------------------------------------------

  // stepsText says how far the attack went, as it counts: "40 steps", "1 step",
  // "37 queries", "one forward pass".
  function stepsText(m) {
    const a = st.started ? st.started.attack : "";
    if (a.startsWith("net:")) return "one forward pass";
    if (a === "square") return plural(m.taken, "query", "queries");
    if (a === "noise") return plural(m.taken, "draw", "draws");
    return plural(m.taken, "step", "steps");
  }

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
    endFirstRun();
    const norms = "L∞ " + m.linf + "/255 · L2 " + m.l2.toFixed(3);
    const last = st.kept[st.kept.length - 1];
    if (m.stopped) {
      setPhase("stopped");
      const where2 = last ? " At " + stepText(last).replace("stopped at ", "") + "." : "";
      status("Stopped: " + m.reason + where2);
      if (!m.saveable && m.no_save) {
        $("ax-finish").hidden = true;
        $("ax-metrics").textContent = m.no_save;
        return;
      }
    } else {
      setPhase("done");
      status("Done: " + m.flipped + " of " + m.watched + " defences changed their answer · " + norms + " · after " + stepsText(m) + ".");
    }
    root.dataset.taken = String(m.taken);
    const summary = [m.flipped + " of " + m.watched + " defences fooled", norms, "after " + stepsText(m) + (m.taken !== m.steps_asked && !st.started.attack.startsWith("net:") ? " of " + m.steps_asked : ""), "seed " + m.seed];
    $("ax-summary").textContent = summary.join(" · ") + (m.early ? ". " + m.early : "") + (m.note ? ". " + m.note + "." : "");
    $("ax-finish-title").textContent = m.stopped ? "Result so far (stopped after " + stepsText(m) + ")" : "Result";
    $("ax-speed").textContent = speed.join(" · ");
    const dl = $("ax-download");
    // A stopped run's result is its last recorded frame: the last one kept (the
    // server sends it again, marked stopped, when the page skipped it).
    const final = m.stopped ? st.kept[st.kept.length - 1] : st.kept.filter((k) => k.final).pop();
    if (final && final.adv) {
      if (st.urls.final) URL.revokeObjectURL(st.urls.final);
      st.urls.final = URL.createObjectURL(final.adv);
      dl.href = st.urls.final;
      dl.download = m.download || "adversarial.png";
      dl.textContent = m.stopped ? "Download the adversarial PNG (stopped after " + stepsText(m) + ")" : "Download the adversarial PNG";
    }
    st.saveKey = m.saveable ? m.key : null;
    const form = $("ax-save-form");
    if (form) form.hidden = !st.saveKey;
    if (m.no_save) $("ax-saved").textContent = m.no_save;
    $("ax-finish").hidden = false;
    armReplay();
  }

  // endFirstRun turns the first run's slow motion off again, unless it was set by hand.
  function endFirstRun() {
    if (!st.firstRun) return;
    st.firstRun = false;
    if (!st.paceTouched) {
      paceIn.value = "0";
      $("ax-pace-note").textContent = "Off again after the first run; slide it to watch a run step by step.";
      updateSettings();
    }
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

  // --- arriving from another page ------------------------------------------------------------

  // A gallery entry's Re-run (/attack?from=SLUG) brings every setting of the entry
  // and its stored image; the classify page's "Attack this image"
  // (/attack?model=M&sample=S, or &handoff=1 with the image in IndexedDB) brings
  // the image and the model.
  async function arrive() {
    const q = new URLSearchParams(location.search);
    try {
      if (q.get("from")) await fromGallery(q.get("from"));
      else {
        if (q.get("model")) attackOnly(q.get("model"));
        if (q.get("sample")) {
          const b = sampleButtons.find((x) => x.dataset.sample === q.get("sample"));
          if (b) b.click();
          else showError("There is no sample called “" + q.get("sample") + "”: choose an image.");
        } else if (q.get("handoff")) {
          const h = await window.GibbonHandoff.take();
          if (h) await chooseFile(h.blob, h.name, h.kind === "drawing" ? "drawing" : "upload", h.kind === "drawing" ? "Your drawing" : "Upload “" + h.name + "”");
          else showError("The image from the classify page is no longer here: choose it again.");
        }
      }
    } catch (e) {
      showError(e.message);
    }
    root.dataset.arrived = "true";
  }

  // attackOnly makes name the one attacked model.
  function attackOnly(name) {
    const box = surrogateBoxes.find((b) => b.value === name);
    if (!box) {
      showError("There is no classifier called “" + name + "” to attack.");
      return;
    }
    surrogateBoxes.forEach((b) => (b.checked = b === box));
    updateSettings();
  }

  async function fromGallery(slug) {
    const resp = await fetch("/api/gallery/" + encodeURIComponent(slug) + "/plan", { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const body = await resp.json().catch(() => null);
    if (!resp.ok) throw new Error("Could not load gallery entry " + slug + ": " + ((body && body.error) || "the server answered " + resp.status + "."));
    const notes = (body.notes || []).concat(applyPlan(body.plan, body));
    st.checking++;
    oodBox.hidden = true;
    chooseSource({ kind: "gallery", entry: slug }, body.image_url, "The image of gallery entry " + slug);
    status("Every setting and the image of gallery entry " + slug + " are loaded: press Start to run it again." + (notes.length ? " " + notes.join(" ") : ""));
  }

  // applyPlan sets the form from a recorded engine plan (with ε, α and the steps
  // in the form's units, from the plan API) and returns what could not be set.
  function applyPlan(p, units) {
    const eps255 = units.eps_255;
    const notes = [];
    const opt = Array.from(attackSel.options).find((o) => o.value === p.attack);
    if (!opt) throw new Error("This server has no attack “" + p.attack + "”: the entry cannot be re-run here.");
    attackSel.value = p.attack;
    updateSettings();
    epsIn.value = String(eps255);
    if (units.steps) stepsIn.value = String(units.steps);
    if (p.models && p.models.length) {
      surrogateBoxes.forEach((b) => (b.checked = p.models.includes(b.value)));
      const missing = p.models.filter((m) => !surrogateBoxes.some((b) => b.value === m));
      if (missing.length) throw new Error("This server has no model " + missing.join(", ") + ": the entry cannot be re-run here.");
    }
    updateSettings();
    seedIn.value = String(p.seed);
    // α in /255, as the page sent it (rounding undoes the division's last bits).
    alphaIn.value = units.alpha_255 ? String(Math.round(units.alpha_255 * 1e6) / 1e6) : "";
    restartsIn.value = String(p.restarts || 1);
    momentumIn.value = String(p.momentum || 1);
    lossSel.value = p.loss === "margin" ? "margin" : "ce";
    leastLikely.checked = p.target === "least-likely";
    targeted.checked = p.target === "class";
    updateSettings();
    if (p.target === "class") targetSel.value = String(p.target_class);
    watchBoxes.forEach((b) => (b.checked = false));
    transformRows.forEach((row) => (row.querySelector('input[type="checkbox"]').checked = false));
    for (const d of p.defences || []) {
      if (!d.transform) {
        const b = watchBoxes.find((x) => x.value === d.model);
        if (b) b.checked = true;
        else notes.push("The defence " + d.model + " is not on this server.");
        continue;
      }
      const row = transformRows.find((r) => r.dataset.defence === d.transform);
      const box = row && row.querySelector('input[type="checkbox"]');
      if (!row || box.checked) {
        notes.push("The defence " + d.model + " + " + d.transform + " " + d.param + " could not be added (one of each transformation).");
        continue;
      }
      box.checked = true;
      row.querySelector('[data-role="param"]').value = String(d.param);
      row.querySelector('[data-role="model"]').value = d.model;
    }
    $("ax-advanced").open = true;
    updateSettings();
    if (p.through) {
      // The defence the run attacked through: the checked row of its transform.
      const i = transformRows.findIndex((r) => r.querySelector('input[type="checkbox"]').checked &&
        (p.defences || []).some((d) => d.transform === r.dataset.defence && p.through.startsWith(d.model + " + ")));
      if (i >= 0) throughSel.value = String(i);
      else notes.push("The run attacked through " + p.through + ", which could not be set.");
      eotIn.value = String(p.eot_samples || 10);
      updateThrough();
    }
    return notes;
  }

  arrive();
})();
