// Excursion alarms on the operators' dashboard: the alarms list (every shipment) and the alarms of the
// shipment selected in the Shipments panel, with Acknowledge and Clear (an operator key is needed; a
// viewer key sees them only). Strings from the server are set with textContent, never innerHTML.
"use strict";
(function () {
  const POLL_MS = 2500;
  const KEY = "oracle-dashboard-key";
  const state = { selected: null, name: null, setup: null, items: [], timer: null, note: "" };
  const LEGS = [["origin", "Origin"], ["in_transit", "In transit"], ["destination", "Destination"]];

  const { el, clear, byId, when } = window.OracleDom;
  function stamp(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—"; }
  function badge(text, prefix) { return el("span", { class: `badge ${prefix}-${String(text).replace(/[^A-Za-z0-9_-]/g, "")}`, text }); }
  function key() { return sessionStorage.getItem(KEY) || ""; }

  async function call(method, path, body) {
    const headers = { "X-API-Key": key() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
    if (resp.status === 403) throw new Error("this needs an operator key");
    if (!resp.ok) {
      let detail = resp.statusText;
      try { detail = (await resp.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(`${resp.status} ${detail}`);
    }
    return resp.json();
  }

  async function act(alarm, action) {
    try {
      await call("POST", `/v1/alarms/${alarm.id}/${action}`);
      state.note = "";
    } catch (e) { state.note = `${action} alarm ${alarm.id}: ${e.message}`; }
    await poll();
  }

  function rows(items, withShipment) {
    const head = el("tr");
    const headers = ["severity", "state", ...(withShipment ? ["shipment"] : []), "rule", "raised (reading time)", "value", "acknowledged", "cleared", ""];
    for (const h of headers) head.append(el("th", { text: h }));
    const body = el("tbody");
    for (const a of items) {
      const buttons = el("td");
      if (!a.acknowledged_by) buttons.append(el("button", { type: "button", "data-testid": "alarm-ack", onclick: () => act(a, "acknowledge"), text: "Acknowledge" }));
      if (a.state !== "cleared") buttons.append(el("button", { type: "button", "data-testid": "alarm-clear", onclick: () => act(a, "clear"), text: "Clear" }));
      body.append(el("tr", { "data-testid": "alarm-row", "data-alarm": a.id, "data-state": a.state },
        el("td", {}, badge(a.severity, "sev")),
        el("td", { "data-testid": "alarm-state" }, badge(a.state, "alarm")),
        withShipment ? el("td", { text: a.shipment_id }) : null,
        el("td", { title: a.description, text: a.rule }),
        el("td", { text: when(a.raised_at_s) }),
        el("td", { text: `${Number(a.raised_value_c).toFixed(1)} °C` }),
        el("td", { "data-testid": "alarm-acked-by", text: a.acknowledged_by ? `${a.acknowledged_by} · ${stamp(a.acknowledged_at)}` : "—" }),
        el("td", { text: a.cleared_by ? `${a.cleared_by} · ${a.cleared_at_s ? when(a.cleared_at_s) : stamp(a.cleared_at)}` : (a.auto_clear ? "clears back in band" : "operator clears") }),
        buttons));
    }
    const t = el("table", {}, el("thead", {}, head), body);
    return el("div", { class: "scroll" }, t);
  }

  async function setLeg(leg) {
    try {
      await call("POST", `/v1/shipments/${encodeURIComponent(state.name)}/legs`, { leg });
      state.note = "";
    } catch (e) { state.note = `leg change: ${e.message}`; }
    await poll();
  }

  function setupView(d) {
    const since = d.legs.length ? d.legs[d.legs.length - 1] : null;
    const box = el("div", { class: "alarm-setup" },
      el("p", { "data-testid": "shipment-leg", text: `leg: ${d.leg}${since && since.leg === d.leg ? ` since ${when(since.at_s)} (${since.recorded_by})` : ""}` }));
    const buttons = el("p");
    for (const [leg, label] of LEGS) buttons.append(el("button", { type: "button", "data-testid": `leg-${leg}`, disabled: leg === d.leg ? "disabled" : null, onclick: () => setLeg(leg), text: label }));
    box.append(buttons);
    if (!d.profile || !d.rules.length) { box.append(el("p", { class: "empty", text: "No alarm rules: the shipment has no escrowed profile with alarm rules." })); return box; }
    box.append(el("p", { text: `${d.profile} alarm rules · readings in the first ${Math.round(d.ignore_s / 60)} min are ignored` }));
    const head = el("tr");
    for (const h of ["rule", "boundary", "allowed", "mode", "legs", "severity", "clears"]) head.append(el("th", { text: h }));
    const body = el("tbody");
    for (const r of d.rules) body.append(el("tr", { "data-testid": "alarm-rule" },
      el("td", { text: r.name }), el("td", { text: `${r.boundary === "upper" ? ">" : "<"} ${r.threshold_c} °C` }),
      el("td", { text: r.allowed_s ? `${Math.round(r.allowed_s / 60)} min` : "at once" }), el("td", { text: r.mode }),
      el("td", { text: r.legs.join(", ") }), el("td", {}, badge(r.severity, "sev")),
      el("td", { text: r.clears_automatically ? "back in band" : "by an operator" })));
    box.append(el("div", { class: "scroll" }, el("table", { "data-testid": "alarm-rules" }, el("thead", {}, head), body)));
    return box;
  }

  function render() {
    const list = clear(byId("alarms"));
    if (state.note) list.append(el("p", { class: "alarm-note", role: "alert", "data-testid": "alarm-note", text: state.note }));
    const open = state.items.filter((a) => a.state !== "cleared").length;
    list.append(el("p", { "data-testid": "alarm-count", text: `${open} open of ${state.items.length}` }));
    if (state.items.length) list.append(rows(state.items, true));
    const panel = clear(byId("shipment-alarms"));
    if (!state.selected) { panel.append(el("p", { class: "empty", text: "Click a shipment." })); return; }
    if (state.setup) panel.append(setupView(state.setup));
    const mine = state.items.filter((a) => a.subject === state.selected);
    if (!mine.length) { panel.append(el("p", { class: "empty", text: "No alarms for this shipment." })); return; }
    panel.append(rows(mine, false));
  }

  async function poll() {
    if (state.timer) { clearTimeout(state.timer); state.timer = null; }
    if (key()) {
      try { state.items = (await call("GET", "/v1/alarms?limit=200")).items; } catch (e) { state.note = `alarms: ${e.message}`; }
      if (state.name) {
        try { state.setup = await call("GET", `/v1/shipments/${encodeURIComponent(state.name)}/alarm-setup`); } catch (e) { state.setup = null; }
      }
      render();
    }
    state.timer = setTimeout(poll, POLL_MS);
  }

  // The Shipments panel (dashboard.js) marks rows with data-subject; follow its selection.
  document.addEventListener("click", (ev) => {
    const row = ev.target instanceof Element ? ev.target.closest("[data-testid=shipment-row]") : null;
    if (row) {
      state.selected = row.getAttribute("data-subject");
      const cell = row.querySelector("td");
      state.name = cell ? cell.textContent : null;
      state.setup = null;
      render();
      poll();
    }
  });
  poll();
})();
