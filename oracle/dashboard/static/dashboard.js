// Operators' dashboard. Every string from the server is rendered with textContent or setAttribute on
// elements built here: never innerHTML, so region names, reject messages or factors cannot inject markup.
"use strict";
(function () {
  const POLL_MS = 2500;
  // Pending governance lives on the chain, not behind the cursor: it is re-read every GOVERNANCE_TICKS polls.
  const GOVERNANCE_TICKS = 12;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const SEVERITY_COLORS = { unknown: "#cbd5e1", none: "#f1f5f9", D0: "#ffff00", D1: "#fcd37f", D2: "#ffaa00", D3: "#e60000", D4: "#730000" };
  const state = { key: "", cursor: null, data: null, region: null, shipment: null, attestation: null, custody: null, layers: null, fitted: false, timer: null, ticks: 0 };

  // ---- small DOM helpers ------------------------------------------------------------------------------
  const { el, clear, byId, when } = window.OracleDom;
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = String(v);
      else node.setAttribute(k, String(v));
    }
    return node;
  }
  function fmt(x, digits) { return (x === null || x === undefined || Number.isNaN(x)) ? "—" : Number(x).toFixed(digits); }
  function short(h) { return typeof h === "string" && h.length > 18 ? h.slice(0, 10) + "…" + h.slice(-6) : (h || "—"); }
  function badge(text) { return el("span", { class: "badge " + String(text || "").replace(/[^A-Za-z0-9_-]/g, ""), text: text || "—" }); }
  function table(headers, rows, opts) {
    const t = el("table", opts && opts.testid ? { "data-testid": opts.testid } : {});
    const head = el("tr");
    for (const h of headers) head.append(el("th", { text: h }));
    t.append(el("thead", {}, head));
    const body = el("tbody");
    for (const r of rows) body.append(r);
    t.append(body);
    return el("div", { class: "scroll" }, t);
  }
  function emptyNote(text) { return el("p", { class: "empty", text }); }

  // ---- API ----------------------------------------------------------------------------------------------
  async function api(path) {
    const resp = await fetch(path, { headers: { "X-API-Key": state.key }, cache: "no-store" });
    if (resp.status === 401 || resp.status === 403) { const e = new Error("key refused"); e.auth = true; throw e; }
    if (!resp.ok) {
      let detail = resp.statusText;
      try { detail = (await resp.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(`${resp.status} ${detail}`);
    }
    return resp.json();
  }
  function setLive(text, cls) { const n = byId("live"); n.textContent = text; n.className = "live " + (cls || ""); }

  // ---- map ----------------------------------------------------------------------------------------------
  const map = L.map("map", { zoomSnap: 0.25, worldCopyJump: false, attributionControl: true });
  map.attributionControl.setPrefix("Leaflet");
  map.setView([0, 20], 3);
  const graticule = L.layerGroup().addTo(map);
  const regionLayer = L.layerGroup().addTo(map);

  function niceStep(span) {
    for (const s of [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30]) if (span / s <= 8) return s;
    return 30;
  }
  // A plain graticule is the shipped basemap: no tiles, nothing fetched from elsewhere. It follows the view
  // (redrawn on every move) and labels the lines where they cross the view's edges: latitudes at the right
  // edge, longitudes at the top, clear of the zoom buttons (top left) and the attribution (bottom right).
  function degrees(v, step, pos, neg) {
    const digits = step >= 1 ? 0 : step >= 0.5 ? 1 : 2;
    return `${Math.abs(v).toFixed(digits)}°${v > 0 ? pos : v < 0 ? neg : ""}`;
  }
  function drawGraticule() {
    graticule.clearLayers();
    const bounds = map.getBounds();
    const span = Math.max(bounds.getNorth() - bounds.getSouth(), bounds.getEast() - bounds.getWest(), 0.1);
    const step = niceStep(span);
    const south = Math.max(-85, Math.floor(bounds.getSouth() / step) * step);
    const north = Math.min(85, Math.ceil(bounds.getNorth() / step) * step);
    const west = Math.max(-180, Math.floor(bounds.getWest() / step) * step);
    const east = Math.min(180, Math.ceil(bounds.getEast() / step) * step);
    const style = { color: "#9fb3c8", weight: 0.7, interactive: false };
    const label = (latlng, text, cls) => L.marker(latlng, { interactive: false, keyboard: false,
      icon: L.divIcon({ html: el("span", { class: "graticule-label " + cls, "data-testid": "graticule-label", text }), className: "graticule-icon", iconSize: null }) }).addTo(graticule);
    // Pixels kept free along the edges: the top row of longitude labels, the zoom buttons, the attribution.
    const size = map.getSize(), TOP = 22, LEFT = 56, RIGHT = 44, BOTTOM = 24;
    for (let i = 0, lat = south; lat <= north + 1e-9; lat = south + ++i * step) {
      L.polyline([[lat, west], [lat, east]], style).addTo(graticule);
      const y = map.latLngToContainerPoint([lat, bounds.getEast()]).y;
      if (y > TOP && y < size.y - BOTTOM) label([lat, bounds.getEast()], degrees(lat, step, "N", "S"), "lat");
    }
    for (let i = 0, lon = west; lon <= east + 1e-9; lon = west + ++i * step) {
      L.polyline([[south, lon], [north, lon]], style).addTo(graticule);
      const x = map.latLngToContainerPoint([bounds.getNorth(), lon]).x;
      if (x > LEFT && x < size.x - RIGHT) label([bounds.getNorth(), lon], degrees(lon, step, "E", "W"), "lon");
    }
  }
  map.on("moveend", drawGraticule);

  function drawLegend() {
    const legend = clear(byId("legend"));
    for (const [cls, color] of Object.entries(SEVERITY_COLORS)) {
      const sw = el("span", { class: "sw" });
      sw.style.background = color; // CSSOM, not a style attribute: the page's CSP forbids inline styles
      legend.append(el("span", {}, sw, cls));
    }
  }

  function drawRegions(regions) {
    regionLayer.clearLayers();
    let bounds = null;
    for (const r of regions) {
      if (!r.geometry || !r.geometry.type) continue;
      const layer = L.geoJSON({ type: "Feature", geometry: r.geometry, properties: {} }, {
        style: () => ({ color: state.region === r.region_id ? "#0f172a" : "#334155", weight: state.region === r.region_id ? 3 : 1.2, fillColor: SEVERITY_COLORS[r.class] || SEVERITY_COLORS.unknown, fillOpacity: 0.75 }),
      });
      const tip = el("div", {},
        el("div", { class: "region-label", text: r.name }),
        el("div", { text: r.severity === null ? "no complete decision" : `severity ${fmt(r.severity, 2)} (${r.class}) · ${r.period}` }));
      layer.bindTooltip(tip, { sticky: true });
      layer.on("click", () => selectRegion(r.region_id));
      layer.addTo(regionLayer);
      layer.eachLayer((l) => { const e = l.getElement && l.getElement(); if (e) { e.setAttribute("data-region", r.region_id); e.setAttribute("data-testid", "region-shape"); } });
      const b = layer.getBounds();
      if (b.isValid()) bounds = bounds ? bounds.extend(b) : L.latLngBounds(b.getSouthWest(), b.getNorthEast());
    }
    if (bounds && !state.fitted) { map.fitBounds(bounds.pad(0.35)); state.fitted = true; }
    drawGraticule();
  }

  // ---- charts -------------------------------------------------------------------------------------------
  function scale(d0, d1, r0, r1) { const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0); return (v) => r0 + (v - d0) * k; }
  function niceTicks(lo, hi, n) {
    const span = hi - lo || 1;
    const raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Math.round(v * 1e6) / 1e6);
    return out;
  }

  function temperatureChart(d) {
    const W = 640, H = 260, L0 = 42, R0 = 12, T0 = 10, B0 = 28;
    const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, "data-testid": "shipment-chart", role: "img" });
    chart.append(svg("title", { text: `Temperature of ${d.name || d.subject}` }));
    const t = d.series.t, v = d.series.temp_c;
    if (!t.length) { chart.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: "no readings yet" })); return chart; }
    let lo = Math.min(...v), hi = Math.max(...v);
    if (d.band) { lo = Math.min(lo, d.band.low_c - 1); hi = Math.max(hi, d.band.high_c + 1); }
    const pad = (hi - lo) * 0.05 || 1; lo -= pad; hi += pad;
    const x = scale(t[0], t[t.length - 1], L0, W - R0), y = scale(lo, hi, H - B0, T0);
    for (const tick of niceTicks(lo, hi, 6)) {
      chart.append(svg("line", { class: "grid", x1: L0, x2: W - R0, y1: y(tick), y2: y(tick) }));
      chart.append(svg("text", { x: L0 - 4, y: y(tick) + 3, "text-anchor": "end", text: `${tick}°` }));
    }
    if (d.band) {
      chart.append(svg("rect", { class: "band", "data-testid": "chart-band", x: L0, width: W - R0 - L0, y: y(d.band.high_c), height: Math.max(0, y(d.band.low_c) - y(d.band.high_c)) }));
    }
    chart.append(svg("line", { class: "axis", x1: L0, x2: L0, y1: T0, y2: H - B0 }));
    chart.append(svg("line", { class: "axis", x1: L0, x2: W - R0, y1: H - B0, y2: H - B0 }));
    const span = t[t.length - 1] - t[0];
    for (let i = 0; i <= 4; i++) {
      const ts = t[0] + (span * i) / 4;
      const label = new Date(ts * 1000).toISOString().slice(span > 3 * 86400 ? 5 : 11, 16).replace("T", " ");
      chart.append(svg("text", { x: x(ts), y: H - B0 + 14, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", text: label }));
    }
    let path = "";
    for (let i = 0; i < t.length; i++) path += `${i ? "L" : "M"}${x(t[i]).toFixed(1)},${y(v[i]).toFixed(1)}`;
    chart.append(svg("path", { class: "temp", d: path, "data-testid": "chart-line" }));
    for (const m of d.markers) {
      const mx = x(Math.min(Math.max(m.at_s, t[0]), t[t.length - 1]));
      const g = svg("g", { "data-testid": `marker-${m.type}`, "data-kind": m.kind });
      g.append(svg("title", { text: `${m.type}: ${m.rule} at ${when(m.at_s)} (measured ${fmt(m.measured, 2)} ${m.unit}, limit ${fmt(m.limit, 2)})` }));
      g.append(svg("line", { class: m.type, x1: mx, x2: mx, y1: T0, y2: H - B0 }));
      if (m.type === "breach") g.append(svg("circle", { class: "breach-dot", cx: mx, cy: T0 + 5, r: 4.5 }));
      else g.append(svg("path", { class: "warning-dot", d: `M${mx - 5},${T0 + 10}L${mx + 5},${T0 + 10}L${mx},${T0}Z` }));
      chart.append(g);
    }
    return chart;
  }

  function spiChart(history) {
    const W = 420, H = 200, L0 = 30, R0 = 8, T0 = 10, B0 = 26;
    const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, "data-testid": "spi-chart", role: "img" });
    chart.append(svg("title", { text: "SPI history" }));
    const byPeriod = new Map();
    for (const h of history) if (h.status === "complete") byPeriod.set(h.period, h);
    const pts = [...byPeriod.values()];
    if (!pts.length) { chart.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: "no complete decision yet" })); return chart; }
    const x = scale(-0.5, pts.length - 0.5, L0, W - R0), y = scale(-3.2, 3.2, H - B0, T0);
    for (const tick of [-3, -2, -1, 0, 1, 2, 3]) {
      chart.append(svg("line", { class: tick === -1 || tick === -1.5 || tick === -2 ? "ref" : "grid", x1: L0, x2: W - R0, y1: y(tick), y2: y(tick) }));
      chart.append(svg("text", { x: L0 - 4, y: y(tick) + 3, "text-anchor": "end", text: String(tick) }));
    }
    const bw = Math.min(26, (W - L0 - R0) / pts.length * 0.6);
    pts.forEach((p, i) => {
      if (p.severity !== null) {
        // Severity 0…5 drawn downwards from SPI 0, so worse droughts and lower SPI point the same way.
        const h = Math.max(0, (p.severity / 5) * (y(-3.2) - y(0)));
        const bar = svg("rect", { class: "sev", x: x(i) - bw / 2, width: bw, y: y(0), height: h });
        bar.append(svg("title", { text: `${p.period}: severity ${fmt(p.severity, 2)} (${p.class})` }));
        chart.append(bar);
      }
      chart.append(svg("text", { x: x(i), y: H - B0 + 14, "text-anchor": "middle", text: p.period }));
    });
    for (const [key, cls] of [["spi_1", "spi1"], ["spi_3", "spi3"], ["spi_6", "spi6"]]) {
      let path = "";
      pts.forEach((p, i) => {
        const val = p.spi[key];
        if (val === null || val === undefined) return;
        path += `${path ? "L" : "M"}${x(i).toFixed(1)},${y(Math.max(-3.2, Math.min(3.2, val))).toFixed(1)}`;
        const dot = svg("circle", { class: cls, cx: x(i), cy: y(Math.max(-3.2, Math.min(3.2, val))), r: 2.5 });
        dot.append(svg("title", { text: `${key} ${p.period}: ${fmt(val, 2)}` }));
        chart.append(dot);
      });
      if (path) chart.append(svg("path", { class: cls, d: path, "data-testid": `spi-line-${key}` }));
    }
    return chart;
  }

  function factorList(factors) {
    if (!factors || !factors.length) return emptyNote("no factors");
    const ol = el("ol", { class: "factors", "data-testid": "factors" });
    for (const f of factors) {
      const parts = [f.name];
      if (f.value !== null) parts.push(`= ${fmt(f.value, 3)}`);
      if (f.contribution !== null) parts.push(`(contribution ${f.contribution >= 0 ? "+" : ""}${fmt(f.contribution, 3)})`);
      ol.append(el("li", { "data-testid": "factor", text: parts.join(" ") }));
    }
    return ol;
  }
  function kv(pairs) {
    const dl = el("dl", { class: "kv" });
    for (const [k, v, testid] of pairs) {
      dl.append(el("dt", { text: k }));
      dl.append(el("dd", testid ? { "data-testid": testid, class: "mono" } : {}, v instanceof Node ? v : String(v === null || v === undefined ? "—" : v)));
    }
    return dl;
  }

  // ---- panels -------------------------------------------------------------------------------------------
  async function selectRegion(id) {
    state.region = id;
    if (state.data) drawRegions(state.data.regions);
    await renderRegion();
  }
  async function renderRegion() {
    if (!state.region) return;
    const target = byId("region-detail");
    let d;
    try { d = await api(`/v1/dashboard/regions/${encodeURIComponent(state.region)}`); } catch (e) { clear(target).append(emptyNote(`could not load region: ${e.message}`)); return; }
    byId("region-empty").hidden = true;
    clear(target).append(
      el("h3", { text: d.name, "data-testid": "region-name" }),
      el("div", {},
        el("span", { class: "big", "data-testid": "region-severity", text: d.severity === null ? "—" : fmt(d.severity, 3) }),
        " ", badge(d.class), " ", el("span", { class: "empty", text: d.period ? `period ${d.period}` : "no complete decision" })),
      el("h4", { text: "Top factors" }), factorList(d.factors),
      el("h4", { text: "SPI history (bars: severity 0–5)" }), spiChart(d.history),
      el("div", { class: "chart-legend" }, el("span", { text: "grey: SPI-1" }), el("span", { text: "blue: SPI-3" }), el("span", { text: "violet: SPI-6" }), el("span", { text: "red dashed: −1 / −2 (McKee)" })),
      table(["period", "status", "severity", "SPI-3", "SPI-6", "note"], d.history.slice().reverse().map((h) =>
        el("tr", {}, el("td", { text: h.period }), el("td", {}, badge(h.status)), el("td", { text: fmt(h.severity, 3) }),
          el("td", { text: fmt(h.spi.spi_3, 2) }), el("td", { text: fmt(h.spi.spi_6, 2) }), el("td", { class: "wrap", text: h.reason || h.note || "" })))));
  }

  function renderAttestations(list) {
    const target = clear(byId("attestations"));
    if (!list.length) { target.append(emptyNote("No attestations yet.")); return; }
    const nodes = (a) => a.network ? `${a.network.signed.length} signed` + (a.network.disagreed.length ? ` · ${a.network.disagreed.length} disagreed` : "") : "—";
    target.append(table(["#", "subject", "kind", "value", "epoch", "status", "nodes", "tx hash", "block", "top factors"], list.map((a) => {
      const tr = el("tr", { class: "clickable" + (state.attestation === a.id ? " selected" : ""), "data-testid": "attestation-row", "data-id": a.id, onclick: () => { state.attestation = a.id; renderAttestations(state.data.attestations); renderAttestationDetail(); } },
        el("td", { text: a.id }), el("td", { text: a.subject_name || short(a.subject) }), el("td", { text: a.kind }),
        el("td", { text: a.display_value }), el("td", { text: a.epoch }), el("td", { "data-testid": "attestation-state" }, badge(a.state)),
        el("td", { text: nodes(a), "data-testid": "attestation-nodes" }),
        el("td", { class: "mono", text: short(a.tx_hash) }), el("td", { text: a.block_number === null ? "—" : a.block_number }),
        el("td", { text: a.factors.map((f) => f.name).join(", ") || "—" }));
      return tr;
    }), { testid: "attestation-table" }));
  }
  function renderAttestationDetail() {
    const target = clear(byId("attestation-detail"));
    const a = state.data && state.data.attestations.find((x) => x.id === state.attestation);
    if (!a) return;
    target.append(el("h3", { text: `Attestation #${a.id}: ${a.subject_name || a.subject}` }),
      kv([["kind", a.kind], ["value", `${a.display_value} (raw ${a.value})`], ["epoch", a.epoch], ["observed at", when(a.observed_at)],
        ["status", a.state, "attestation-detail-state"], ["report status", a.status], ["tx status", a.tx_status], ["tx hash", a.tx_hash || "not sent yet", "tx-hash"], ["block", a.block_number], ["gas used", a.gas_used],
        ["revert reason", a.revert_reason], ["signers", a.signers.join(", ") || "—"],
        ...(a.network ? [["nodes signed", a.network.signed.join(", ") || "—", "network-signed"], ["nodes disagreed", a.network.disagreed.join(", ") || "none", "network-disagreed"],
          ["combined here", a.network.combined.join(", ") || "— (another node transmitted)"], ["transmitted by", a.network.transmitted_by || "not yet", "network-transmitter"], ["round", a.network.round]] : []),
        ["subject", a.subject], ["inputs root", a.inputs_root], ["model id", a.model_id], ["manifest", a.manifest_cid]]),
      el("h4", { text: "Top-3 factors" }), factorList(a.factors),
      el("section", { class: "custody", "data-testid": "custody" }, el("h4", { text: "Chain of custody" }), el("div", { id: "custody-body" }, emptyNote("loading…"))));
    renderCustody(a.id);
  }

  // ---- chain of custody ---------------------------------------------------------------------------------
  // A report's manifest never changes, so its custody view is fetched once per selected attestation.
  async function renderCustody(id) {
    let d = state.custody && state.custody.id === id ? state.custody.data : null;
    if (!d) {
      try { d = await api(`/v1/dashboard/attestations/${encodeURIComponent(id)}/custody`); } catch (e) {
        if (state.attestation === id && byId("custody-body")) clear(byId("custody-body")).append(emptyNote(`could not load the chain of custody: ${e.message}`));
        return;
      }
      state.custody = { id, data: d };
    }
    const target = byId("custody-body");
    if (state.attestation !== id || !target) return;
    clear(target);
    if (!d.steps.length) { target.append(emptyNote(d.note || "No recorded steps.")); return; }
    const dec = d.decision || {};
    target.append(el("p", { class: "custody-summary", "data-testid": "custody-summary" },
      `${dec.kind || "?"} decision for ${dec.subject || "?"}${dec.period ? ` · period ${dec.period}` : ""} · `, badge(dec.status),
      ` · ${d.steps.length} steps from ${d.raw_inputs.length} raw inputs · manifest `, el("span", { class: "mono", title: d.manifest_cid, text: short(d.manifest_cid) })));
    target.append(custodyGraph(d));
    if (d.note) target.append(emptyNote(d.note));
    target.append(table(["#", "step", "code version", "inputs", "output", "parameters"], d.steps.map((s) =>
      el("tr", { "data-testid": "custody-step", "data-step": s.name },
        el("td", { text: s.index + 1 }), el("td", { class: "step-name", text: s.name }), el("td", { class: "mono", text: s.code_version }),
        el("td", {}, ...s.inputs.map(custodyInput)),
        el("td", { class: "mono" }, "→ ", el("span", { title: s.output, "data-cid": s.output, text: short(s.output) })),
        el("td", { class: "wrap params", text: Object.entries(s.params).map(([k, v]) => `${k}=${typeof v === "string" ? short(v) : v}`).join(", ") || "—" }))),
    { testid: "custody-steps" }));
    const raw = el("details", { class: "custody-raw" }, el("summary", { text: `Raw inputs (${d.raw_inputs.length})` }),
      table(["what", "label", "source", "CID"], d.raw_inputs.map((r) =>
        el("tr", { "data-testid": "custody-raw-input", "data-cid": r.cid }, el("td", {}, badge(r.what)), el("td", { class: "wrap", text: r.label || "—" }),
          el("td", { class: "wrap", text: r.source || "—" }), el("td", { class: "mono", title: r.cid, text: r.cid })))));
    target.append(raw);
  }
  function custodyInput(i) {
    const cid = el("span", { class: "mono", title: i.cid, "data-cid": i.cid, "data-testid": i.from_step === null ? "custody-raw-cid" : "custody-step-cid", text: short(i.cid) });
    const what = i.from_step === null ? `${i.what}${i.label ? ": " + i.label : ""}` : `← #${i.from_step + 1} ${i.label}`;
    return el("div", { class: "custody-input" + (i.from_step === null ? " raw" : "") }, cid, " ", el("span", { text: what }));
  }
  // Stages (one box per step name or raw-input kind, with a count) in columns, arrows from sources to users.
  function custodyGraph(d) {
    const BW = 150, BH = 40, CW = 200, RH = 54, PAD = 10;
    const cols = new Map();
    for (const s of d.stages) { if (!cols.has(s.column)) cols.set(s.column, []); cols.get(s.column).push(s); }
    const ncols = Math.max(...d.stages.map((s) => s.column)) + 1, nrows = Math.max(...[...cols.values()].map((c) => c.length));
    const W = PAD * 2 + (ncols - 1) * CW + BW, H = PAD * 2 + nrows * RH - (RH - BH);
    const pos = new Map();
    for (const [c, list] of cols) list.forEach((s, r) => pos.set(s.id, { x: PAD + c * CW, y: PAD + (H - PAD * 2 - list.length * RH + (RH - BH)) / 2 + r * RH }));
    const g = svg("svg", { class: "custody-graph", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "data-testid": "custody-graph" });
    g.append(svg("title", { text: "Chain of custody: raw inputs (grey) through the decision's steps (blue)" }));
    const defs = svg("defs"), marker = svg("marker", { id: "custody-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0L10,5L0,10Z", class: "arrow-head" }));
    defs.append(marker); g.append(defs);
    for (const l of d.links) {
      const a = pos.get(l.source), b = pos.get(l.target);
      if (!a || !b) continue;
      const x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x - 2, y2 = b.y + BH / 2, mx = (x1 + x2) / 2;
      g.append(svg("path", { class: "link", d: `M${x1},${y1}C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#custody-arrow)" }));
    }
    for (const s of d.stages) {
      const p = pos.get(s.id);
      const box = svg("g", { class: "stage " + s.kind, "data-testid": "custody-stage", "data-stage": s.name, transform: `translate(${p.x},${p.y})` });
      box.append(svg("title", { text: `${s.kind === "step" ? "step" : "raw input"} ${s.name}: ${s.count}` }));
      box.append(svg("rect", { width: BW, height: BH, rx: s.kind === "step" ? 4 : 12 }));
      box.append(svg("text", { x: BW / 2, y: s.count > 1 ? 17 : 25, "text-anchor": "middle", class: "name", text: s.name }));
      if (s.count > 1) box.append(svg("text", { x: BW / 2, y: 32, "text-anchor": "middle", class: "count", text: `× ${s.count}` }));
      g.append(box);
    }
    return g;
  }

  function renderShipments(list) {
    const target = clear(byId("shipments"));
    if (!list.length) { target.append(emptyNote("No shipments yet.")); return; }
    target.append(table(["shipment", "status", "profile", "readings", "last reading"], list.map((s) =>
      el("tr", { class: "clickable" + (state.shipment === s.subject ? " selected" : ""), "data-testid": "shipment-row", "data-subject": s.subject, onclick: () => { state.shipment = s.subject; renderShipments(state.data.shipments); renderShipment(); } },
        el("td", { text: s.name || short(s.subject) }), el("td", { "data-testid": "shipment-state" }, badge(s.status)), el("td", { text: s.profile || (s.profile_hash ? "unknown" : "—") }),
        el("td", { text: s.readings }), el("td", { text: s.last_reading_ms ? when(s.last_reading_ms / 1000) : "—" })))));
  }
  // The report needs the key, which a plain link would not send: fetch it and open what came back.
  function disposition(path, label, testid) {
    return el("a", { href: path, "data-testid": testid, onclick: async (ev) => {
      ev.preventDefault();
      const tab = window.open("", "_blank");
      try {
        const resp = await fetch(path, { headers: { "X-API-Key": state.key }, cache: "no-store" });
        if (!resp.ok) throw new Error(`${resp.status} ${resp.statusText}`);
        const url = URL.createObjectURL(await resp.blob());
        if (tab) tab.location.href = url; else window.location.href = url;
      } catch (e) { if (tab) tab.close(); setLive(`disposition report: ${e.message}`, "error"); }
    }, text: label });
  }
  async function renderShipment() {
    if (!state.shipment) return;
    const target = byId("shipment-detail");
    let d;
    try { d = await api(`/v1/dashboard/shipments/${encodeURIComponent(state.shipment)}`); } catch (e) { clear(target).append(emptyNote(`could not load shipment: ${e.message}`)); return; }
    byId("shipment-empty").hidden = true;
    const breaches = d.markers.filter((m) => m.type === "breach"), warnings = d.markers.filter((m) => m.type === "warning");
    clear(target).append(
      el("h3", { text: d.name || d.subject, "data-testid": "shipment-name" }),
      kv([["status", d.status, "shipment-status"], ["escrowed", d.amount_display, "shipment-amount"], ["profile", d.profile ? `${d.profile} (${d.band.low_c}–${d.band.high_c} °C)` : "unknown"], ["rules verdict", d.rules_verdict], ["settlement tx", d.settled_tx]]),
      d.disposition ? el("p", { "data-testid": "disposition" }, "Disposition report: ", disposition(d.disposition.pdf, "PDF", "disposition-pdf"), " · ", disposition(d.disposition.html, "HTML", "disposition-html")) : "",
      temperatureChart(d),
      el("div", { class: "chart-legend" }, el("span", { text: "green: profile band" }), el("span", { text: `red: breach (${breaches.length})` }), el("span", { text: `amber: early warning (${warnings.length})` })),
      d.note ? emptyNote(d.note) : "",
      (d.devices || []).length ? table(["device", "status", "signs with", "key"], d.devices.map((v) =>
        el("tr", { "data-testid": "shipment-device" }, el("td", { text: v.device_id }), el("td", {}, badge(v.status)),
          el("td", { "data-testid": "device-auth", title: v.note || "", text: v.strength === "weaker" ? `${v.alg} (weaker: the oracle holds its secret)` : `${v.alg} (device-held key)` }),
          el("td", { class: "mono", text: v.key_fingerprint ? short(v.key_fingerprint) : "—" })))) : "",
      d.markers.length ? table(["at", "type", "rule", "measured", "limit"], d.markers.map((m) =>
        el("tr", {}, el("td", { text: when(m.at_s) }), el("td", {}, badge(m.type)), el("td", { class: "wrap", text: m.rule }), el("td", { text: `${fmt(m.measured, 2)} ${m.unit}` }), el("td", { text: fmt(m.limit, 2) })))) : emptyNote("No breach or warning."));
  }

  function renderPolicies(policies) {
    const target = clear(byId("policies"));
    if (!policies.length) { target.append(emptyNote("No policies yet.")); return; }
    target.append(table(["policy", "region", "trigger", "exit", "limit", "status", "payout", "payout tx"], policies.map((p) =>
      el("tr", { "data-testid": "policy-row" }, el("td", { text: p.policy_id }), el("td", { text: p.region }), el("td", { text: fmt(p.trigger, 2) }), el("td", { text: fmt(p.exit, 2) }),
        el("td", { class: "amount", text: p.limit_display || p.limit }), el("td", {}, badge(p.status)), el("td", { class: "amount", "data-testid": "policy-payout", text: p.payout_display || "—" }), el("td", { class: "mono", text: short(p.payout_tx) })))));
  }
  // Products (GET /v1/products): each one's hash and the burn figures over its reference series, the same
  // figures `oracle products backtest --json` prints. Amounts are in the token's base units.
  function tokenAmount(base, token) {
    if (base === null || base === undefined) return "—";
    const t = token || { symbol: "tUSD", decimals: 6 };
    return `${(Number(base) / 10 ** t.decimals).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })} ${t.symbol}`;
  }
  function renderProducts(products, token) {
    const target = clear(byId("products"));
    if (!products || !products.length) { target.append(emptyNote("No products.")); return; }
    target.append(table(["product", "hash", "seasons", "payout freq.", "burn cost", "pure premium", "loaded premium", "1 in 10", "1 in 20", "limit"], products.map((p) => {
      const b = p.backtest;
      const cells = b
        ? [el("td", { text: `${b.seasons} (${b.first_season}–${b.last_season})` }), el("td", { text: fmt(b.payout_frequency, 4) }),
          el("td", { "data-testid": "product-burn-cost", text: fmt(b.burn_cost, 4) }), el("td", { class: "amount", text: tokenAmount(b.pure_premium, token) }),
          el("td", { class: "amount", text: tokenAmount(b.loaded_premium, token) }), el("td", { class: "amount", text: tokenAmount(b.payout_1_in_10, token) }),
          el("td", { class: "amount", text: tokenAmount(b.payout_1_in_20, token) })]
        : [el("td", { colspan: 7, class: "wrap", text: p.backtest_error || "no reference series" })];
      return el("tr", { "data-testid": "product-row", "data-product": p.id }, el("td", { class: "wrap", text: `${p.name} (${p.id} v${p.version})` }),
        el("td", { class: "mono", title: p.hash, text: short(p.hash) }), ...cells, el("td", { class: "amount", text: tokenAmount(p.limit, token) }));
    })));
  }
  async function refreshProducts(token) {
    try { renderProducts((await api("/v1/products?limit=100")).items, token); }
    catch (e) { if (e.auth) throw e; clear(byId("products")).append(emptyNote(`Not available: ${e.message}`)); }
  }
  function renderRejects(rejects) {
    const target = clear(byId("rejects"));
    if (!rejects.length) { target.append(emptyNote("No rejected inputs.")); return; }
    target.append(table(["when", "source", "reason", "subject", "message"], rejects.map((r) =>
      el("tr", { "data-testid": "reject-row" }, el("td", { text: r.received_at ? r.received_at.slice(0, 19).replace("T", " ") : "—" }), el("td", { text: r.source }),
        el("td", {}, badge(r.reason)), el("td", { class: "wrap", text: r.subject || "—" }), el("td", { class: "wrap", text: r.message })))));
  }

  function renderHeartbeats(beats) {
    const target = clear(byId("heartbeats"));
    if (!beats) { target.append(emptyNote("Shown on a network node (the network file sets the heartbeat).")); return; }
    if (!beats.length) { target.append(emptyNote("No subscribed subject has an accepted report yet.")); return; }
    target.append(table(["subject", "last report", "age", "heartbeat", "status"], beats.map((b) =>
      el("tr", { "data-testid": "heartbeat-row", "data-missed": String(b.missed) }, el("td", { class: "wrap", text: b.name }), el("td", { text: when(b.last_observed_at) }),
        el("td", { text: duration(b.age_s) }), el("td", { text: duration(b.heartbeat_s) }), el("td", {}, badge(b.missed ? "missed" : "ok"))))));
  }

  function duration(s) {
    if (s >= 86400) return `${fmt(s / 86400, 1)} d`;
    if (s >= 3600) return `${fmt(s / 3600, 1)} h`;
    return `${Math.ceil(s / 60)} min`;
  }
  const CHANGE_NAMES = { add_signer: "add signer", set_threshold: "set threshold", approve_consumer: "approve consumer" };
  function renderGovernance(g) {
    const target = clear(byId("governance"));
    if (!g) { target.append(emptyNote("Read from the chain once connected.")); return; }
    if (!g.available) { target.append(emptyNote(`Not available: ${g.reason}`)); return; }
    const pairs = [["signers", `${g.threshold} of ${g.signers.length}`, "governance-quorum"], ["timelock", duration(g.delay_s), "governance-delay"]];
    if (g.pending_delay) pairs.push(["timelock change", `to ${duration(g.pending_delay.delay_s)} from ${when(g.pending_delay.effective_at)}`]);
    target.append(kv(pairs));
    if (!g.pending.length) { target.append(emptyNote("No pending signer, threshold or consumer changes.")); return; }
    target.append(table(["change", "target", "activates (chain time, UTC)", "status"], g.pending.map((c) =>
      el("tr", { "data-testid": "governance-row" }, el("td", { text: CHANGE_NAMES[c.action] || c.action }),
        el("td", { class: "mono", text: c.action === "set_threshold" ? `k = ${c.threshold}` : short(c.target) }),
        el("td", { text: when(c.activates_at) }),
        el("td", {}, c.ready ? badge("ready") : el("span", { text: `in ${duration(c.seconds_left)}` }))))));
  }
  async function refreshGovernance() {
    try { renderGovernance(await api("/v1/dashboard/governance")); } catch (e) { if (e.auth) throw e; renderGovernance({ available: false, reason: e.message }); }
  }

  async function refresh() {
    const data = await api("/v1/dashboard/overview");
    state.data = data; state.cursor = data.cursor;
    drawRegions(data.regions);
    renderAttestations(data.attestations); renderAttestationDetail();
    renderShipments(data.shipments); renderPolicies(data.policies); renderRejects(data.rejects); renderHeartbeats(data.heartbeats);
    await Promise.all([renderRegion(), renderShipment(), refreshGovernance(), refreshProducts(data.token)]);
  }

  // Polling a tiny cursor keeps the page live without holding a connection per tab; the full overview is
  // fetched only when the cursor moves.
  async function tick() {
    try {
      const c = await api("/v1/dashboard/cursor");
      if (c.cursor !== state.cursor) await refresh();
      else if (++state.ticks % GOVERNANCE_TICKS === 0) await refreshGovernance();
      setLive(`live · updated ${new Date().toLocaleTimeString()}`, "ok");
    } catch (e) {
      if (e.auth) { disconnect("The key was refused (unknown, revoked, or below viewer)."); return; }
      setLive(`offline: ${e.message}`, "bad");
    }
    state.timer = setTimeout(tick, POLL_MS);
  }
  function connect(key) {
    state.key = key; state.cursor = null;
    sessionStorage.setItem("oracle-dashboard-key", key);
    byId("key-form").hidden = true; byId("disconnect").hidden = false; byId("key-error").textContent = "";
    if (state.timer) clearTimeout(state.timer);
    tick();
  }
  function disconnect(message) {
    if (state.timer) clearTimeout(state.timer);
    state.key = ""; sessionStorage.removeItem("oracle-dashboard-key");
    byId("key-form").hidden = false; byId("disconnect").hidden = true;
    byId("key-error").textContent = message || "";
    setLive("not connected", "");
  }

  byId("key-form").addEventListener("submit", (ev) => { ev.preventDefault(); const k = byId("key-input").value.trim(); if (k) connect(k); });
  byId("disconnect").addEventListener("click", () => disconnect(""));
  drawLegend();
  renderAttestations([]); renderShipments([]); renderPolicies([]); renderRejects([]); renderProducts([]); renderGovernance(null); drawRegions([]);
  // A key in the fragment (never sent to the server) is taken once and removed from the address bar.
  const m = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (m) { history.replaceState(null, "", location.pathname + location.search); connect(decodeURIComponent(m[1])); }
  else if (sessionStorage.getItem("oracle-dashboard-key")) connect(sessionStorage.getItem("oracle-dashboard-key"));
})();
