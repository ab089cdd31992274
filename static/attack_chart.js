// The explorer's step charts (views/attack.templ): the loss over the steps, and each
// watched model's confidence over the same steps, drawn on canvases sized to their
// box at the screen's pixel density. A log scale takes over when the loss spans
// decades; every number on an axis is formatted, never a raw float. Text is never
// below 12 CSS px. Each canvas carries role="img" and an aria-label that says
// what it shows in words.
"use strict";

(function () {
  const INK = "#17202a", MUTED = "#55606e", GRID = "#d8dde4";
  const TRUE = "#0072B2", TOP = "#D55E00", LOSS = "#1f5fa8", MARK = "#7B3294";
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  const SUP = { "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };

  // num writes an axis value for people: 3 significant digits, and powers of ten
  // (2.63×10⁻⁶) instead of long runs of zeros.
  function num(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) {
      const e = Math.floor(Math.log10(a));
      const m = v / Math.pow(10, e);
      const ms = Number(m.toPrecision(3)).toString();
      return (ms === "1" ? "" : ms === "-1" ? "−" : ms.replace("-", "−") + "×") + "10" + String(e).split("").map((c) => SUP[c]).join("");
    }
    return Number(v.toPrecision(3)).toString().replace("-", "−");
  }

  // niceTicks are about n round values spanning [lo, hi].
  function niceTicks(lo, hi, n) {
    const span = hi - lo || Math.abs(hi) || 1;
    const raw = span / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((k) => k * p).find((s) => s >= raw);
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    return out;
  }

  // fit sizes a canvas's bitmap to its box and returns a context in CSS pixels.
  function fit(canvas, cssHeight) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(160, Math.round(canvas.clientWidth || canvas.width));
    const h = cssHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    g.fillStyle = "#fff";
    g.fillRect(0, 0, w, h);
    g.font = FONT;
    return { g, w, h };
  }

  // xAxis draws step ticks along the bottom and returns the x mapping.
  function xAxis(g, box, xmax) {
    const x = (s) => box.l + ((box.r - box.l) * s) / xmax;
    g.fillStyle = MUTED;
    g.textAlign = "center";
    const ticks = niceTicks(0, xmax, Math.max(2, Math.floor((box.r - box.l) / 70))).filter((t) => t <= xmax && Number.isInteger(t));
    for (const t of ticks) {
      g.strokeStyle = GRID;
      g.beginPath();
      g.moveTo(x(t), box.b);
      g.lineTo(x(t), box.b + 4);
      g.stroke();
      g.fillText(String(t), x(t), box.b + 16);
    }
    return x;
  }

  function marker(g, box, x, at) {
    if (at === null || at === undefined) return;
    g.strokeStyle = MARK;
    g.lineWidth = 2;
    g.setLineDash([4, 3]);
    g.beginPath();
    g.moveTo(x(at), box.t);
    g.lineTo(x(at), box.b);
    g.stroke();
    g.setLineDash([]);
  }

  // scaleFor picks the loss axis: linear, or log10 of |loss| when every value has
  // the same sign and they span two decades or more (a targeted loss creeping up
  // to −0.0000026 is all in its last decades). For negative losses the log axis is
  // turned over so that a climbing loss still climbs.
  function scaleFor(vals) {
    const pos = vals.every((v) => v > 0), neg = vals.every((v) => v < 0);
    const abs = vals.map(Math.abs);
    const lo = Math.min(...abs), hi = Math.max(...abs);
    if ((pos || neg) && lo > 0 && hi / lo >= 100) {
      const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
      const sign = pos ? 1 : -1;
      const t = (v) => sign * Math.log10(Math.abs(v));
      const ticks = [];
      const every = Math.max(1, Math.ceil((b - a) / 5));
      for (let e = a; e <= b; e += every) ticks.push(sign * Math.pow(10, e));
      const ends = [t(sign * Math.pow(10, a)), t(sign * Math.pow(10, b))];
      return { log: true, t, lo: Math.min(...ends), hi: Math.max(...ends), ticks };
    }
    let vlo = Math.min(...vals), vhi = Math.max(...vals);
    if (vhi - vlo < 1e-9) {
      vlo -= 0.5;
      vhi += 0.5;
    }
    const ticks = niceTicks(vlo, vhi, 4);
    return { log: false, t: (v) => v, lo: Math.min(vlo, ticks[0]), hi: Math.max(vhi, ticks[ticks.length - 1]), ticks };
  }

  // loss draws points [{seq, loss}] over steps 0..xmax, with a marker at a step.
  function loss(canvas, points, xmax, at) {
    const { g, w, h } = fit(canvas, 180);
    const pts = points.filter((p) => p && Number.isFinite(p.loss));
    if (!pts.length) {
      g.fillStyle = MUTED;
      g.fillText("The loss appears here as the attack runs.", 16, h / 2);
      canvas.setAttribute("aria-label", "Loss per step: no values yet");
      return;
    }
    const sc = scaleFor(pts.map((p) => p.loss));
    g.textAlign = "right";
    const labels = sc.ticks.map(num);
    // What the chart shows, for tests and tools: the scale, the y labels, the last step.
    canvas.dataset.scale = sc.log ? "log" : "linear";
    canvas.dataset.ticks = JSON.stringify(labels);
    canvas.dataset.xmax = String(xmax);
    const left = Math.max(...labels.map((s) => g.measureText(s).width)) + 14;
    const box = { l: left, r: w - 10, t: 10, b: h - 34 };
    const y = (v) => box.b - ((box.b - box.t) * (sc.t(v) - sc.lo)) / (sc.hi - sc.lo);
    sc.ticks.forEach((t, i) => {
      g.strokeStyle = GRID;
      g.beginPath();
      g.moveTo(box.l, y(t));
      g.lineTo(box.r, y(t));
      g.stroke();
      g.fillStyle = MUTED;
      g.fillText(labels[i], box.l - 6, y(t) + 4);
    });
    const x = xAxis(g, box, Math.max(xmax, 1));
    g.fillStyle = MUTED;
    g.textAlign = "right";
    g.fillText(sc.log ? "step · log scale" : "step", box.r, h - 2);
    marker(g, box, x, at);
    g.strokeStyle = LOSS;
    g.lineWidth = 2;
    g.beginPath();
    pts.forEach((p, k) => (k ? g.lineTo(x(p.seq), y(p.loss)) : g.moveTo(x(p.seq), y(p.loss))));
    g.stroke();
    if (pts.length === 1) {
      g.fillStyle = LOSS;
      g.beginPath();
      g.arc(x(pts[0].seq), y(pts[0].loss), 3, 0, 2 * Math.PI);
      g.fill();
    }
    const first = pts[0], last = pts[pts.length - 1];
    canvas.setAttribute("aria-label", "Loss per step" + (sc.log ? " (log scale)" : "") + ": " + num(first.loss) + " at step " + first.seq +
      ", " + num(last.loss) + " at step " + last.seq + ".");
  }

  // confidence draws one watched model's top-1 probability and its probability of
  // the true class over the steps: series [{seq, prob, trueProb, label}].
  function confidence(canvas, name, trueLabel, series, xmax, at) {
    const { g, w, h } = fit(canvas, 110);
    const box = { l: 44, r: w - 8, t: 8, b: h - 30 };
    const y = (p) => box.b - (box.b - box.t) * p;
    g.textAlign = "right";
    for (const t of [0, 0.5, 1]) {
      g.strokeStyle = GRID;
      g.beginPath();
      g.moveTo(box.l, y(t));
      g.lineTo(box.r, y(t));
      g.stroke();
      g.fillStyle = MUTED;
      g.fillText(Math.round(t * 100) + " %", box.l - 6, y(t) + 4);
    }
    const x = xAxis(g, box, Math.max(xmax, 1));
    marker(g, box, x, at);
    // line draws get() where it is a number, with a gap where it is not; a lone
    // point is a dot.
    const line = (get, color, dash) => {
      g.strokeStyle = color;
      g.fillStyle = color;
      g.lineWidth = 2;
      g.setLineDash(dash || []);
      let run = [];
      const flush = () => {
        if (run.length === 1) {
          g.beginPath();
          g.arc(x(run[0].seq), y(get(run[0])), 2.5, 0, 2 * Math.PI);
          g.fill();
        } else if (run.length > 1) {
          g.beginPath();
          run.forEach((s, k) => (k ? g.lineTo(x(s.seq), y(get(s))) : g.moveTo(x(s.seq), y(get(s)))));
          g.stroke();
        }
        run = [];
      };
      for (const s of series) {
        if (s && Number.isFinite(get(s))) run.push(s);
        else flush();
      }
      flush();
      g.setLineDash([]);
    };
    line((s) => s.trueProb, TRUE);
    // The answer's probability, where the answer is not the true class.
    line((s) => (s.label !== trueLabel ? s.prob : NaN), TOP, [5, 3]);
    const pts = series.filter(Boolean);
    if (!pts.length) {
      canvas.setAttribute("aria-label", name + ": no steps yet");
      return;
    }
    const first = pts[0], last = pts[pts.length - 1];
    const pc = (p) => (p * 100).toFixed(1) + " %";
    let text = name + ": ";
    if (Number.isFinite(first.trueProb) && Number.isFinite(last.trueProb)) {
      text += "true class " + trueLabel + " from " + pc(first.trueProb) + " to " + pc(last.trueProb) + "; ";
    }
    text += "answers " + last.label + " at " + pc(last.prob) + " at step " + last.seq + ".";
    canvas.setAttribute("aria-label", text);
  }

  window.GibbonExplorerChart = { loss, confidence, num };
})();
