// llmpipe-tools ui: sortable tables, plotly curves, live polling of a running job, the composer.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const readJSON = (id) => { const el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; };
const PLOT_LAYOUT = {
  margin: {l: 56, r: 16, t: 34, b: 42}, font: {family: "system-ui, DejaVu Sans, sans-serif", size: 12, color: "#1d2330"},
  paper_bgcolor: "#fff", plot_bgcolor: "#fff", legend: {orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom"},
  xaxis: {gridcolor: "#eef0f3", zeroline: false}, yaxis: {gridcolor: "#eef0f3", zeroline: false},
};
const PLOT_CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"]};
const COLORS = {loss: "#2457c5", eval_loss: "#d9822b", learning_rate: "#6a7384", grad_norm: "#8e44ad"};

// ------------------------------------------------------------------------------- sortable tables
function cellValue(td) {
  const raw = td.dataset.sort !== undefined ? td.dataset.sort : td.textContent.trim();
  const n = parseFloat(raw);
  return raw !== "" && !isNaN(n) && /^[-+0-9.eE]+$/.test(raw) ? n : raw.toLowerCase();
}
function makeSortable(table) {
  $$("thead th", table).forEach((th, i) => th.addEventListener("click", () => {
    const asc = !th.classList.contains("asc");
    $$("thead th", table).forEach((h) => h.classList.remove("asc", "desc"));
    th.classList.add(asc ? "asc" : "desc");
    const rows = $$("tbody tr", table);
    rows.sort((a, b) => {
      const x = cellValue(a.cells[i]), y = cellValue(b.cells[i]);
      if (x === "" && y !== "") return 1;
      if (y === "" && x !== "") return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    });
    rows.forEach((r) => table.tBodies[0].appendChild(r));
  }));
}

// ------------------------------------------------------------------------------- runs list
function initRuns() {
  const button = $("#compare");
  if (!button) return;
  const picked = () => $$(".pick:checked").map((c) => c.value);
  $$(".pick").forEach((c) => c.addEventListener("change", () => {
    const p = picked();
    button.disabled = p.length !== 2;
    button.textContent = p.length === 2 ? "Compare these two" : "Compare two runs (tick two)";
  }));
  button.textContent = "Compare two runs (tick two)";
  button.addEventListener("click", () => {
    const [a, b] = picked();
    location.href = `/diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`;
  });
}

// ------------------------------------------------------------------------------- run page: curves + live
function drawCurves(curves) {
  const box = $("#curves");
  if (!box || typeof Plotly === "undefined") return;
  const wanted = [];
  for (const c of curves) {
    const s = c.series;
    const groups = [["loss", ["loss", "eval_loss"]], ["learning rate", ["learning_rate"]], ["gradient norm", ["grad_norm"]],
                    ["rewards", ["rewards/accuracies", "eval_rewards/accuracies", "rewards/margins", "eval_rewards/margins"]]];
    for (const [title, keys] of groups) {
      const traces = keys.filter((k) => s[k] && s[k].x.length).map((k) => ({
        x: s[k].x, y: s[k].y, name: k, type: "scatter", mode: s[k].x.length > 40 ? "lines" : "lines+markers",
        line: {width: 2, color: COLORS[k]}, marker: {size: 5},
      }));
      if (traces.length) wanted.push({id: `plot-${c.stage}-${title.replace(/\W/g, "")}`, title: `${c.stage}: ${title}`, traces});
    }
  }
  if (!wanted.length) {
    box.innerHTML = '<p class="muted">No log history yet (the train stage writes it when it ends, and each checkpoint ' +
                    "holds it while it runs).</p>";
    return;
  }
  const sources = curves.filter((c) => c.source).map((c) => `<div class="source muted small mono">${c.stage}: ${c.source}</div>`);
  const divs = wanted.map((w) => {   // every box first, then the plots: each measures its final width
    let div = document.getElementById(w.id);
    if (!div) {
      if (!box.querySelector(".plot")) box.innerHTML = "";
      div = document.createElement("div");
      div.id = w.id; div.className = "plot";
      box.appendChild(div);
    }
    return div;
  });
  wanted.forEach((w, i) => {
    const layout = Object.assign({}, PLOT_LAYOUT, {title: {text: w.title, font: {size: 13}, x: 0.01},
                                                   xaxis: Object.assign({}, PLOT_LAYOUT.xaxis, {title: {text: "step"}})});
    Plotly.react(divs[i], w.traces, layout, PLOT_CONFIG);
  });
  $$(".source", box).forEach((n) => n.remove());
  box.insertAdjacentHTML("beforeend", sources.join(""));
}

function initRun() {
  const snap = readJSON("snapshot");
  if (!snap) return;
  drawCurves(snap.curves);
  if (snap.status !== "running") return;
  const poll = async () => {
    try {
      const r = await fetch(snap.api, {cache: "no-store"});
      if (r.ok) {
        const data = await r.json();
        $("#stages").innerHTML = data.stages_html;
        $("#run-status").innerHTML = data.status_html;
        drawCurves(data.curves);
        if (data.status !== "running") { setTimeout(() => location.reload(), 1500); return; }   // then the held-out metrics and lock file
      }
    } catch (e) { /* the server restarted: try again */ }
    setTimeout(poll, 2000);
  };
  setTimeout(poll, 2000);
}

// ------------------------------------------------------------------------------- sweep page
function initSweep() {
  const data = readJSON("sweep-data");
  const box = $("#sweep-plots");
  if (!data || !box || typeof Plotly === "undefined") return;
  const params = data.params.length ? data.params : ["job"];
  const divs = params.map((p) => {   // every box first, then the plots: each measures its final width
    const div = document.createElement("div");
    div.className = "plot"; div.id = `sweep-${p.replace(/\W/g, "-")}`;
    box.appendChild(div);
    return div;
  });
  params.forEach((p, n) => {
    const pts = data.points.filter((q) => q.value !== null);
    const xs = pts.map((q) => (p === "job" ? q.job : q.params[p]));
    const numeric = xs.every((x) => x !== undefined && x !== null && !isNaN(parseFloat(x)));
    const x = numeric ? xs.map(parseFloat) : xs;
    const hover = pts.map((q) => `job ${q.job}<br>` + Object.entries(q.params).map(([k, v]) => `${k}=${v}`).join("<br>"));
    const best = pts.map((q, i) => [q, i]).filter(([q]) => q.best);
    const traces = [{x, y: pts.map((q) => q.value), text: hover, hoverinfo: "text+y", mode: "markers", type: "scatter",
                     name: "jobs", marker: {size: 9, color: "#2457c5", opacity: 0.8}}];
    if (best.length) traces.push({x: best.map(([, i]) => x[i]), y: best.map(([q]) => q.value), mode: "markers", type: "scatter",
                                  name: "best", text: best.map(([, i]) => hover[i]), hoverinfo: "text+y",
                                  marker: {size: 16, symbol: "star", color: "#d9822b", line: {color: "#8a4b0f", width: 1}}});
    const logx = numeric && x.every((v) => v > 0) && Math.max(...x) / Math.min(...x) >= 20;
    const layout = Object.assign({}, PLOT_LAYOUT, {
      title: {text: `${data.objective} against ${p} (${data.direction} is better)`, font: {size: 13}, x: 0.01},
      xaxis: Object.assign({}, PLOT_LAYOUT.xaxis, {title: {text: p}, type: numeric ? (logx ? "log" : "linear") : "category",
                                                   tickvals: numeric && new Set(x).size <= 8 ? [...new Set(x)] : undefined}),
      yaxis: Object.assign({}, PLOT_LAYOUT.yaxis, {title: {text: data.objective}}),
    });
    Plotly.newPlot(divs[n], traces, layout, PLOT_CONFIG);
  });
}

// ------------------------------------------------------------------------------- composer
function initComposer() {
  const fields = $("#fields");
  if (!fields) return;
  const recipe = $("#recipe");
  recipe.addEventListener("change", () => $("#recipe-form").submit());
  const controls = $$(".field input[name], .field select[name]", fields);
  const changes = () => {
    const out = {};
    for (const c of controls) if (c.value !== c.dataset.initial) out[c.name] = c.value;
    return out;
  };
  $("#filter").addEventListener("input", (ev) => {
    const q = ev.target.value.trim().toLowerCase();
    $$(".field", fields).forEach((f) => f.classList.toggle("hidden-by-filter",
      q !== "" && !f.dataset.path.toLowerCase().includes(q) && !$(".help", f).textContent.toLowerCase().includes(q)));
    $$(".family", fields).forEach((d) => { if (q) d.open = $$(".field:not(.hidden-by-filter)", d).length > 0; });
  });
  let timer = null, seq = 0, lastSent = null;
  const render = (res, sent) => {
    const state = $("#check-state");
    $$(".field", fields).forEach((f) => f.classList.remove("has-problem"));
    $$(".problem", fields).forEach((p) => { p.hidden = true; p.innerHTML = ""; });
    const global = [];
    for (const p of res.problems) {
      const keys = String(p.key).split(" + ").map((k) => k.trim());
      const slot = keys.map((k) => fields.querySelector(`.problem[data-for="${CSS.escape(k)}"]`)).find((x) => x);
      const html = `<b>${esc(p.key)}</b>${p.value !== "" && p.value !== null ? " = " + esc(JSON.stringify(p.value)) : ""}: ` +
        `${esc(p.message)}${p.allowed ? `<div>allowed: ${esc(p.allowed)}</div>` : ""}` +
        `${p.fix ? `<div class="fix">fix: ${esc(p.fix)}</div>` : ""}`;
      if (slot) {
        slot.innerHTML = html; slot.hidden = false;
        const field = slot.closest(".field");
        field.classList.add("has-problem");
        field.closest("details").open = true;
      } else global.push(`<div class="problem">${html}</div>`);
    }
    $("#global-problems").innerHTML = global.join("");
    const n = res.problems.length;
    state.className = "check-state " + (n ? "bad" : "ok");
    state.textContent = n ? `${n} problem${n > 1 ? "s" : ""}: pre-flight refuses this configuration`
                          : `pre-flight passes · store ${res.store}`;
    const cached = res.stages.filter((s) => s.status === "cached").length, total = res.stages.length;
    const summary = cached === total ? `all ${total} stages are in the store (cached): nothing would run again`
      : `${cached} of ${total} stages already in the store (cached); the others will run`;
    $("#plan").innerHTML = n ? '<p class="muted">(shown when pre-flight passes)</p>'
      : res.plan_html + `<p class="small muted">${summary}</p>`;
    $("#command").textContent = res.command;
    $("#yaml").textContent = res.yaml;
    const keys = Object.keys(sent);
    $("#changes").innerHTML = keys.length ? keys.map((k) => `<li>${esc(k)}=${esc(sent[k])}</li>`).join("") : '<li class="muted">none</li>';
    $$(".family", fields).forEach((d) => {
      const count = $$(".field", d).filter((f) => f.classList.contains("edited")).length;
      $(".changed-count", d).textContent = count ? `${count} changed` : "";
    });
  };
  const check = async () => {
    const sent = changes(), key = recipe.value + JSON.stringify(sent);
    if (key === lastSent) return;   // a change event after the input events that were already checked
    lastSent = key;
    const mine = ++seq;
    $("#check-state").className = "check-state";
    $("#check-state").textContent = "checking…";
    const r = await fetch("/api/compose", {method: "POST", headers: {"Content-Type": "application/json"},
                                           body: JSON.stringify({recipe: recipe.value, overrides: sent})});
    const res = await r.json();
    if (mine === seq) render(res, sent);
  };
  for (const c of controls) {
    const edited = () => c.closest(".field").classList.toggle("edited", c.value !== c.dataset.initial);
    c.addEventListener("input", () => { edited(); clearTimeout(timer); timer = setTimeout(check, 400); });
    c.addEventListener("change", () => { edited(); clearTimeout(timer); timer = setTimeout(check, 50); });
  }
  $("#export").addEventListener("click", () => {
    const blob = new Blob([$("#yaml").textContent], {type: "text/yaml"});
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "my_recipe.yaml";
    document.body.appendChild(a); a.click(); a.remove();
  });
  check();
}
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

document.addEventListener("DOMContentLoaded", () => {
  $$("table.sortable").forEach(makeSortable);
  initRuns(); initRun(); initSweep(); initComposer();
});
