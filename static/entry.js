// The permalink page's script: the perturbation map's gain control redraws the
// map in place (without it, the gain form reloads the page), and the Verify button
// asks the server to replay the run and shows what it found. No inline scripts:
// the Content-Security-Policy forbids them.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  // --- the perturbation map's gain ---------------------------------------------

  const map = document.getElementById("perturbation");
  const gainSel = document.getElementById("gain");
  if (map && gainSel) {
    document.getElementById("gain-apply")?.setAttribute("hidden", "");
    gainSel.addEventListener("change", () => {
      const g = gainSel.value;
      map.src = map.dataset.base + "?gain=" + encodeURIComponent(g);
      document.getElementById("gain-shown").textContent = g;
      const full = document.getElementById("full-at");
      if (full) {
        full.textContent = String(Number((Number(full.dataset.eps) / Number(g)).toPrecision(4)));
      }
      const url = new URL(location.href);
      url.searchParams.set("gain", g);
      history.replaceState(null, "", url);
    });
  }

  // --- Verify ------------------------------------------------------------------

  const button = document.getElementById("verify");
  const box = document.getElementById("verify-result");
  if (!button || !box) {
    return;
  }
  button.hidden = false;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      node.setAttribute(k, String(v));
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function show(state, ...children) {
    box.hidden = false;
    box.dataset.state = state;
    box.replaceChildren(...children);
  }

  // render shows a verification: the verdict in words, then exactly what differs.
  function render(v) {
    const parts = [];
    if (v.reproduced) {
      parts.push(el("h3", { "data-testid": "verify-verdict" }, "Reproduced bit-for-bit"));
    } else {
      parts.push(el("h3", { "data-testid": "verify-verdict" }, "Not reproduced"));
    }
    parts.push(el("p", { "data-testid": "verify-summary" }, v.summary));
    const facts = el("ul", { "data-testid": "verify-facts" },
      el("li", {}, `${v.changed} of ${v.values} pixel values differ` + (v.changed ? ` (by up to ${v.max_diff}/255)` : "")));
    for (const d of v.differences || []) {
      facts.append(el("li", { "data-testid": "verify-difference" }, d));
    }
    const took = v.elapsed_ms < 1000 ? v.elapsed_ms.toFixed(0) + " ms" : (v.elapsed_ms / 1000).toFixed(1) + " s";
    facts.append(el("li", {}, "replayed in " + took + " on " +
      [...new Set((v.providers || []).map((p) => p.ep))].join(", ")));
    parts.push(facts);
    if (v.provider_note) {
      parts.push(el("p", { class: "notice", "data-testid": "verify-provider-note" }, v.provider_note));
    }
    show(v.reproduced ? "reproduced" : "differs", ...parts);
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    show("running", el("p", {}, "Replaying the run on this server… (it waits its turn behind the explorer's runs)"));
    try {
      const resp = await fetch(button.dataset.url, {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
        credentials: "same-origin",
      });
      let body = null;
      try {
        body = await resp.json();
      } catch (e) {
        body = null;
      }
      if (!resp.ok || !body) {
        show("error", el("p", { class: "error", "data-testid": "verify-error" },
          (body && body.error) || "The server answered " + resp.status + "."));
        return;
      }
      render(body);
    } catch (e) {
      show("error", el("p", { class: "error", "data-testid": "verify-error" }, "Could not reach the server: " + e.message));
    } finally {
      button.disabled = false;
    }
  });
})();
