// Hand-written SVG charts for the sweep and matrix pages: a line chart (axes with
// units, ticks, grid, points whose <title> gives the value on hover, vertical markers,
// thumbnails under the x-axis) and a heatmap with ranks. Large type, for projectors;
// on a narrow screen a chart scrolls sideways rather than shrinking its text below
// 11 px. No style attributes (the CSP forbids them): presentation attributes, and
// the CSSOM for the smallest width.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  // Okabe–Ito: distinguishable with the common colour-vision deficiencies.
  const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8F7A00", "#7B3294", "#1B7837", "#B2182B", "#4D4D4D"];

  function svgEl(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) n.setAttribute(k, String(v));
    }
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function title(node, text) {
    node.append(svgEl("title", {}, text));
    return node;
  }
  function niceWidth(container, min, max) {
    const w = container.clientWidth || container.getBoundingClientRect().width || max;
    return Math.max(min, Math.min(max, Math.floor(w)));
  }

  // MIN_TEXT is the smallest text a chart may show (CSS px): the picture is never
  // shown narrower than keeps its smallest font at this size; its box scrolls.
  const MIN_TEXT = 11;
  function keepTextSize(svg, width, smallestFont) {
    svg.style.minWidth = Math.ceil((width * MIN_TEXT) / smallestFont) + "px";
  }

  // line draws spec into container (replacing what was there) and returns the svg.
  // spec: {label, xLabel, yLabel, x: [values], xTick(v) → [main, sub], yMax, yTicks: [v],
  //        yFormat(v), series: [{name, color, dash, points: [{x, y, title}]}],
  //        markers: [{x, color, label}], thumbs: [{x, href, title}]}
  function line(container, spec) {
    const W = niceWidth(container, 480, 1100);
    const thumbs = (spec.thumbs || []).filter(Boolean);
    const thumbSize = thumbs.length ? Math.max(28, Math.min(56, Math.floor((W - 120) / Math.max(spec.x.length, 1)) - 6)) : 0;
    const m = { top: 24, right: 60, bottom: 74 + (thumbs.length ? thumbSize + 12 : 0), left: 84 };
    const H = 380 + m.bottom;
    const iw = W - m.left - m.right;
    const ih = H - m.top - m.bottom;
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": spec.label, class: "chart-svg" });
    svg.append(svgEl("title", {}, spec.label));
    const xs = spec.x;
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    const sx = (v) => m.left + (x1 > x0 ? ((v - x0) / (x1 - x0)) * iw : iw / 2);
    const yMax = spec.yMax || 1;
    const sy = (v) => m.top + ih - (v / yMax) * ih;
    const g = svgEl("g", { class: "axes" });
    // Grid and y ticks.
    for (const t of spec.yTicks) {
      g.append(svgEl("line", { x1: m.left, x2: m.left + iw, y1: sy(t), y2: sy(t), stroke: "#d8dde4", "stroke-width": 1 }));
      g.append(svgEl("text", { x: m.left - 10, y: sy(t) + 6, "text-anchor": "end", "font-size": 16, fill: "#17202a" }, spec.yFormat(t)));
    }
    // Axes.
    g.append(svgEl("line", { x1: m.left, x2: m.left + iw, y1: m.top + ih, y2: m.top + ih, stroke: "#17202a", "stroke-width": 1.5 }));
    g.append(svgEl("line", { x1: m.left, x2: m.left, y1: m.top, y2: m.top + ih, stroke: "#17202a", "stroke-width": 1.5 }));
    // X ticks: every value when the labels fit side by side, else every k-th one.
    const widest = Math.max(...xs.map((v, i) => Math.max(...spec.xTick(v, i).filter(Boolean).map((t, k) => textWidth(t, k ? 13 : 15)))));
    const every = Math.max(1, Math.ceil((widest + 10) / (iw / Math.max(xs.length - 1, 1))));
    // The last value always gets its label; the one before it gives way when they would touch.
    const last = xs.length - 1, lastRegular = last - (last % every);
    const labelled = (i) => i === last || (i % every === 0 && !(i === lastRegular && last - i < every));
    xs.forEach((v, i) => {
      g.append(svgEl("line", { x1: sx(v), x2: sx(v), y1: m.top + ih, y2: m.top + ih + 6, stroke: "#17202a" }));
      if (!labelled(i)) return;
      const [main, sub] = spec.xTick(v, i);
      g.append(svgEl("text", { x: sx(v), y: m.top + ih + 24, "text-anchor": "middle", "font-size": 15, fill: "#17202a" }, main));
      if (sub) g.append(svgEl("text", { x: sx(v), y: m.top + ih + 42, "text-anchor": "middle", "font-size": 13, fill: "#55606e" }, sub));
    });
    g.append(svgEl("text", { x: m.left + iw / 2, y: m.top + ih + 64, "text-anchor": "middle", "font-size": 17, "font-weight": 600, fill: "#17202a" }, spec.xLabel));
    g.append(svgEl("text", { x: 20, y: m.top + ih / 2, transform: `rotate(-90 20 ${m.top + ih / 2})`, "text-anchor": "middle", "font-size": 17, "font-weight": 600, fill: "#17202a" }, spec.yLabel));
    svg.append(g);
    // Markers (behind the lines).
    for (const mk of spec.markers || []) {
      const mg = svgEl("g", { class: "marker", "data-label": mk.label });
      mg.append(title(svgEl("line", { x1: sx(mk.x), x2: sx(mk.x), y1: m.top, y2: m.top + ih, stroke: mk.color, "stroke-width": 2.5, "stroke-dasharray": "2 5" }), mk.label));
      mg.append(title(svgEl("path", { d: `M${sx(mk.x) - 7},${m.top - 2} h14 l-7,10 z`, fill: mk.color }), mk.label));
      svg.append(mg);
    }
    // Series.
    for (const s of spec.series) {
      const sg = svgEl("g", { class: "series", "data-name": s.name });
      const pts = s.points.filter((p) => p && Number.isFinite(p.y));
      if (pts.length > 1) {
        sg.append(svgEl("polyline", {
          points: pts.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(" "),
          fill: "none", stroke: s.color, "stroke-width": 3, "stroke-dasharray": s.dash ? "8 6" : null, "stroke-linejoin": "round",
        }));
      }
      for (const p of pts) {
        const c = svgEl("circle", { cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 5.5, fill: s.dash ? "#fff" : s.color, stroke: s.color, "stroke-width": 2.5, class: "point", tabindex: 0 });
        sg.append(title(c, p.title));
      }
      svg.append(sg);
    }
    // Thumbnails under the x-axis, one per ε.
    if (thumbs.length) {
      const tg = svgEl("g", { class: "thumbs" });
      const ty = m.top + ih + 74;
      for (const t of thumbs) {
        const im = svgEl("image", { x: sx(t.x) - thumbSize / 2, y: ty, width: thumbSize, height: thumbSize, href: t.href, preserveAspectRatio: "xMidYMid meet", class: "thumb" });
        tg.append(title(im, t.title));
      }
      svg.append(tg);
    }
    keepTextSize(svg, W, 13);
    container.replaceChildren(svg);
    return svg;
  }

  // Sequential colour from white to a dark red (share in [0,1]).
  function heat(share) {
    const s = Math.max(0, Math.min(1, share));
    const from = [255, 255, 255], mid = [244, 165, 130], to = [103, 0, 13];
    const mix = (a, b, t) => a.map((v, i) => Math.round(v + (b[i] - v) * t));
    let c = s < 0.5 ? mix(from, mid, s * 2) : mix(mid, to, (s - 0.5) * 2);
    const white = [255, 255, 255], ink = [23, 32, 42];
    // Between light and dark lies a band where neither white nor ink text reaches
    // 4.5:1: a cell there is darkened until white does.
    while (contrast(c, white) < 4.5 && contrast(c, ink) < 4.5) c = c.map((v) => Math.round(v * 0.95));
    return { fill: `rgb(${c[0]},${c[1]},${c[2]})`, ink: contrast(c, white) > contrast(c, ink) ? "#ffffff" : "#17202a" };
  }

  // contrast is the WCAG contrast ratio of two sRGB colours.
  function contrast(a, b) {
    const lum = (c) => {
      const [r, g, bl] = c.map((v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
    };
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  }

  // Text widths for the heatmap's layout, measured with the chart's font (a canvas
  // works even while the chart's panel is hidden), with a little slack.
  const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  let measurer;
  function textWidth(s, size, weight) {
    if (measurer === undefined) measurer = document.createElement("canvas").getContext("2d");
    if (!measurer) return Math.ceil(String(s).length * size * 0.62);
    measurer.font = `${weight || 400} ${size}px ${FONT}`;
    return Math.ceil(measurer.measureText(String(s)).width * 1.08) + 2;
  }

  // heatmap draws a matrix: spec {label, rowsLabel, colsLabel, rows: [{name, note}],
  // cols: [{name, note}], share[r][c] in [0,1] (colour), text[r][c], tip[r][c],
  // rowEnd: [text] and colEnd: [text or [lines]] (scores and ranks beside and below)}.
  // The layout comes from the labels: the row headers' column is as wide as the
  // longest row name, cells are as wide as their text and the lines below them
  // (narrowed to fit the panel where they can be), column names are turned by 45°
  // with room above for the longest, and the picture widens for the last ones.
  function heatmap(container, spec) {
    const rows = spec.rows, cols = spec.cols;
    const F = { head: 16, row: 16, cell: 17, end: 16, corner: 14 };
    const rad = (45 * Math.PI) / 180, SIN = Math.sin(rad), COS = Math.cos(rad);
    const colNames = cols.map((c) => shorten(c.name, 24));
    const rowNames = rows.map((r) => wrap(r.name, 22));
    const corner = spec.rowsLabel + " ↓ · " + spec.colsLabel + " →";
    const colEnd = spec.colEnd ? spec.colEnd.map((v) => (Array.isArray(v) ? v : [v]).map(String)) : null;
    const max = (xs) => xs.reduce((a, b) => Math.max(a, b), 0);

    const rowHead = Math.max(...rowNames.flat().map((s) => textWidth(s, F.row)), textWidth(corner, F.corner)) + 24;
    const headW = colNames.map((s) => textWidth(s, F.head));
    const cellTextW = max(spec.text.flat().map((s) => textWidth(s, F.cell, 600)));
    const endLineW = colEnd ? max(colEnd.flat().map((s) => textWidth(s, F.end, 700))) : 0;
    const endLines = colEnd ? max(colEnd.map((l) => l.length)) : 0;
    const rowEndW = spec.rowEnd ? max(spec.rowEnd.map((s) => textWidth(s, F.end, 700))) + 24 : 0;
    const minCell = Math.max(52, cellTextW + 10, endLineW + 8);
    // A column name starts under its column's centre and rises to the right; its
    // far end (plus the descent's corner) must stay inside the picture.
    const widthFor = (cell) => Math.ceil(Math.max(rowHead + cols.length * cell + rowEndW,
      ...cols.map((c, j) => rowHead + j * cell + cell / 2 + headW[j] * COS + F.head * 0.3 * SIN)) + 12);
    const avail = niceWidth(container, 420, 1400);
    let cell = 110;
    while (cell > minCell && widthFor(cell) > avail) cell -= 2;
    cell = Math.max(cell, minCell);
    const colHead = Math.ceil(max(headW) * SIN + F.head * COS) + 20;
    const endH = colEnd ? 28 + (endLines - 1) * 20 + 10 : 0;
    const W = widthFor(cell);
    const H = colHead + rows.length * cell + endH + 12;
    const gridRight = rowHead + cols.length * cell, gridBottom = colHead + rows.length * cell;

    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": spec.label, class: "chart-svg heatmap" });
    svg.append(svgEl("title", {}, spec.label));
    svg.append(svgEl("text", { x: rowHead - 12, y: colHead - 12, "text-anchor": "end", "font-size": F.corner, fill: "#55606e", class: "corner" }, corner));
    cols.forEach((c, j) => {
      const x = rowHead + j * cell + cell / 2, y = colHead - 8;
      const t = svgEl("text", { x, y, transform: `rotate(-45 ${x} ${y})`, "font-size": F.head, fill: "#17202a", class: "col-head" }, colNames[j]);
      svg.append(title(t, c.name + (c.note ? " · " + c.note : "")));
    });
    rows.forEach((r, i) => {
      const y = colHead + i * cell;
      const lines = rowNames[i];
      const t = svgEl("text", { x: rowHead - 12, y: y + cell / 2 + 6 - ((lines.length - 1) * 19) / 2, "text-anchor": "end", "font-size": F.row, fill: "#17202a", class: "row-head" });
      lines.forEach((l, k) => t.append(svgEl("tspan", { x: rowHead - 12, dy: k ? 19 : 0 }, l)));
      svg.append(title(t, r.name + (r.note ? " · " + r.note : "")));
      cols.forEach((c, j) => {
        const h = heat(spec.share[i][j]);
        const x = rowHead + j * cell;
        const g = svgEl("g", { class: "cell", "data-row": i, "data-col": j });
        g.append(svgEl("rect", { x: x + 1, y: y + 1, width: cell - 2, height: cell - 2, fill: h.fill, stroke: "#d8dde4" }));
        g.append(svgEl("text", { x: x + cell / 2, y: y + cell / 2 + 6, "text-anchor": "middle", "font-size": F.cell, "font-weight": 600, fill: h.ink }, spec.text[i][j]));
        svg.append(title(g, spec.tip[i][j]));
      });
      if (spec.rowEnd) {
        svg.append(svgEl("text", { x: gridRight + 12, y: y + cell / 2 + 6, "font-size": F.end, "font-weight": 700, fill: "#17202a", class: "row-end" }, spec.rowEnd[i]));
      }
    });
    if (colEnd) {
      colEnd.forEach((lines, j) => {
        const x = rowHead + j * cell + cell / 2;
        const t = svgEl("text", { x, y: gridBottom + 28, "text-anchor": "middle", "font-size": F.end, "font-weight": 700, fill: "#17202a", class: "col-end" });
        lines.forEach((s, k) => t.append(svgEl("tspan", { x, dy: k ? 20 : 0 }, s)));
        svg.append(title(t, cols[j].name + ": " + lines.join(" ")));
      });
    }
    keepTextSize(svg, W, F.corner);
    container.replaceChildren(svg);
    return svg;
  }

  // wrap breaks a label into at most two lines of about n characters, at spaces or
  // after hyphens; what does not fit ends in "…" (the full name is its title).
  function wrap(s, n) {
    if (s.length <= n) return [s];
    const words = s.split(/(?<=[ -])/);
    const lines = [""];
    for (const w of words) {
      const cur = lines[lines.length - 1];
      if (cur && (cur + w).length > n) lines.push(w);
      else lines[lines.length - 1] = cur + w;
    }
    const out = lines.slice(0, 2).map((l) => l.trim());
    if (lines.length > 2 || out[1].length > n) out[1] = shorten(lines.slice(1).join("").trim(), n);
    return out.map((l) => shorten(l, n + 4));
  }

  function shorten(s, n) {
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }

  window.GibbonChart = { line, heatmap, heat, palette: PALETTE };
})();
