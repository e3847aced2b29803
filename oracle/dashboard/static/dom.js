// DOM helpers shared by the dashboard's scripts (loaded first). Strings from the server go in with
// textContent or setAttribute only, never innerHTML, so names and messages cannot inject markup.
"use strict";
window.OracleDom = (function () {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "onclick") node.addEventListener("click", v);
      else node.setAttribute(k, String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function byId(id) { return document.getElementById(id); }
  function when(s) { return s ? new Date(s * 1000).toISOString().replace(".000Z", "Z").replace("T", " ") : "—"; }
  return Object.freeze({ el, clear, byId, when });
})();
