// nexus dashboard: live updates over server-sent events, and the dependency graph drawn
// from its JSON endpoint. No build step; every text is set with textContent (paths are
// user data).
(function () {
  "use strict";

  function live() {
    var status = document.getElementById("live-status");
    var refresh = function () { if (window.htmx) { htmx.trigger(document.body, "nexus-change"); } };
    if (!window.EventSource) {
      setInterval(refresh, 5000);  // the fallback: plain polling
      return;
    }
    var source = new EventSource(document.body.dataset.events);
    source.addEventListener("hello", function () { if (status) { status.classList.add("on"); status.textContent = "●"; } });
    source.addEventListener("change", refresh);
    source.onerror = function () { if (status) { status.classList.remove("on"); status.textContent = "○"; } };
  }

  var SVG = "http://www.w3.org/2000/svg";
  function el(name, attrs) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  // Layers: a node sits one layer right of its deepest dependency.
  function layout(graph) {
    var layer = {}, incoming = {};
    graph.nodes.forEach(function (n) { layer[n.id] = 0; incoming[n.id] = []; });
    graph.edges.forEach(function (e) { if (incoming[e.to]) { incoming[e.to].push(e.from); } });
    for (var pass = 0; pass < graph.nodes.length; pass++) {
      var moved = false;
      graph.edges.forEach(function (e) {
        if (layer[e.from] !== undefined && layer[e.to] <= layer[e.from]) { layer[e.to] = layer[e.from] + 1; moved = true; }
      });
      if (!moved) { break; }
    }
    var columns = {};
    graph.nodes.forEach(function (n) { (columns[layer[n.id]] = columns[layer[n.id]] || []).push(n); });
    return { layer: layer, columns: columns };
  }

  function draw(container, graph) {
    var W = 220, H = 34, GX = 70, GY = 16;
    var placed = layout(graph), pos = {}, maxRows = 0, maxLayer = 0;
    Object.keys(placed.columns).forEach(function (c) {
      placed.columns[c].forEach(function (n, row) {
        pos[n.id] = { x: 10 + Number(c) * (W + GX), y: 10 + row * (H + GY) };
      });
      maxRows = Math.max(maxRows, placed.columns[c].length);
      maxLayer = Math.max(maxLayer, Number(c));
    });
    var svg = el("svg", { width: 20 + (maxLayer + 1) * (W + GX) - GX, height: 20 + maxRows * (H + GY) - GY, role: "img" });
    svg.setAttribute("aria-label", "dependency graph: an arrow runs from a dependency to what waits for it");
    var defs = el("defs"), marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
    marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a96a3" }));
    defs.appendChild(marker); svg.appendChild(defs);
    graph.edges.forEach(function (e) {
      var a = pos[e.from], b = pos[e.to];
      if (!a || !b) { return; }
      var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      svg.appendChild(el("path", { "class": "edge", d: "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2, "marker-end": "url(#arrow)" }));
    });
    graph.nodes.forEach(function (n) {
      var p = pos[n.id], status = n.status || "missing";
      var group = el("g", { "class": "node " + status + (n.id === graph.root ? " root" : ""), transform: "translate(" + p.x + "," + p.y + ")" });
      group.setAttribute("data-path", n.path);
      var target = group;
      if (n.path_id && n.id !== graph.root) {
        target = el("a", { href: container.dataset.root + "/items/" + encodeURIComponent(n.path_id) });
        group.appendChild(target);
      }
      target.appendChild(el("rect", { width: W, height: H }));
      var label = el("text", { x: 8, y: 14 });
      label.textContent = n.path.length > 28 ? "…" + n.path.slice(-27) : n.path;
      var title = el("title"); title.textContent = n.path + " (" + status + ")";
      var sub = el("text", { x: 8, y: 28, "class": "muted" });
      sub.textContent = status;
      target.appendChild(title); target.appendChild(label); target.appendChild(sub);
      svg.appendChild(group);
    });
    container.textContent = "";
    container.appendChild(svg);
    if (graph.truncated) {
      var note = document.createElement("p");
      note.className = "muted";
      note.textContent = "Only the first " + graph.nodes.length + " nodes are drawn.";
      container.appendChild(note);
    }
  }

  function graph() {
    var container = document.getElementById("graph");
    if (!container) { return; }
    fetch(container.dataset.src, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (g) { draw(container, g); container.dataset.drawn = "true"; })
      .catch(function (err) { container.textContent = "The graph could not be drawn: " + err; });
  }

  document.addEventListener("DOMContentLoaded", function () { live(); graph(); });
})();
