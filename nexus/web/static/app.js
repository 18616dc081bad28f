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

  // The layout is dagre's (vendored, static/dagre.min.js): layers left to right, each edge
  // given a lane of its own through every layer it crosses (dagre's dummy nodes). Dagre's
  // own edge points are joined by straight lines that can clip a box next to a lane, so the
  // route is rebuilt from the lanes: straight along the lane through a layer of boxes, a
  // curve only in the empty space between layers. Edges meet a box at separate ports.
  var W = 220, H = 34, PORT = 8;  // a box grows to keep its ports PORT px apart

  function layout(graph) {
    var g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 24, edgesep: 14, ranksep: 56, marginx: 12, marginy: 12 });
    g.setDefaultEdgeLabel(function () { return {}; });
    var known = {}, degree = {};
    graph.nodes.forEach(function (n) { known[n.id] = true; degree[n.id] = { from: 0, to: 0 }; });
    var edges = graph.edges.filter(function (e) { return known[e.from] && known[e.to]; });
    edges.forEach(function (e) { degree[e.from].from++; degree[e.to].to++; });
    graph.nodes.forEach(function (n) {
      var most = Math.max(degree[n.id].from, degree[n.id].to);
      g.setNode(n.id, { width: W, height: Math.max(H, PORT * (most + 1)) });
    });
    edges.forEach(function (e) { g.setEdge(e.from, e.to); });
    dagre.layout(g);
    var columns = {};  // the x of each layer that holds boxes
    graph.nodes.forEach(function (n) { columns[Math.round(g.node(n.id).x)] = true; });
    var inColumn = function (x) { return columns[Math.round(x)] === true; };
    var routes = edges.map(function (e) {
      var lane = [];
      g.edge(e.from, e.to).points.slice(1, -1).forEach(function (p) {
        if (inColumn(p.x)) { lane.push({ x: p.x - W / 2, y: p.y }, { x: p.x + W / 2, y: p.y }); }
        else { lane.push({ x: p.x, y: p.y }); }
      });
      return { edge: e, lane: lane, from: g.node(e.from), to: g.node(e.to) };
    });
    ports(routes, "from", function (r) { return r.lane.length ? r.lane[0].y : r.to.y; });
    ports(routes, "to", function (r) { return r.lane.length ? r.lane[r.lane.length - 1].y : r.from.y; });
    routes.forEach(function (r) {
      r.points = [{ x: r.from.x + W / 2, y: r.fromY }].concat(r.lane, [{ x: r.to.x - W / 2, y: r.toY }]);
    });
    return { g: g, routes: routes };
  }

  // Spread the edges leaving (end "from") or entering (end "to") each box over its side, in
  // the order of where they come from or go to, so that they do not cross at the box.
  function ports(routes, end, towards) {
    var byNode = {};
    routes.forEach(function (r) { (byNode[r.edge[end]] = byNode[r.edge[end]] || []).push(r); });
    Object.keys(byNode).forEach(function (id) {
      var group = byNode[id].sort(function (a, b) { return towards(a) - towards(b); });
      group.forEach(function (r, i) { var h = r[end].height; r[end + "Y"] = r[end].y - h / 2 + h * (i + 1) / (group.length + 1); });
    });
  }

  function pathOf(points) {
    var d = "M" + points[0].x + "," + points[0].y;
    for (var i = 1; i < points.length; i++) {
      var a = points[i - 1], b = points[i];
      if (a.y === b.y) { d += " L" + b.x + "," + b.y; continue; }
      var mx = (a.x + b.x) / 2;  // horizontal tangents: x stays between a.x and b.x
      d += " C" + mx + "," + a.y + " " + mx + "," + b.y + " " + b.x + "," + b.y;
    }
    return d;
  }

  function draw(container, graph) {
    var placed = layout(graph), size = placed.g.graph();
    var svg = el("svg", { width: Math.ceil(size.width), height: Math.ceil(size.height), role: "img" });
    svg.setAttribute("aria-label", "dependency graph: an arrow runs from a dependency to what waits for it");
    var defs = el("defs"), marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
    marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a96a3" }));
    defs.appendChild(marker); svg.appendChild(defs);
    var pathOfId = {};
    graph.nodes.forEach(function (n) { pathOfId[n.id] = n.path; });
    placed.routes.forEach(function (r) {
      var edge = el("path", { "class": "edge", d: pathOf(r.points), "marker-end": "url(#arrow)" });
      edge.setAttribute("data-from", pathOfId[r.edge.from]);
      edge.setAttribute("data-to", pathOfId[r.edge.to]);
      svg.appendChild(edge);
    });
    graph.nodes.forEach(function (n) {
      var p = placed.g.node(n.id), status = n.status || "missing";
      var group = el("g", { "class": "node " + status + (n.id === graph.root ? " root" : ""), transform: "translate(" + (p.x - W / 2) + "," + (p.y - p.height / 2) + ")" });
      group.setAttribute("data-path", n.path);
      var target = group;
      if (n.path_id && n.id !== graph.root) {
        target = el("a", { href: container.dataset.root + "/items/" + encodeURIComponent(n.path_id) });
        group.appendChild(target);
      }
      target.appendChild(el("rect", { width: W, height: p.height }));
      var label = el("text", { x: 8, y: p.height / 2 - 3 });
      label.textContent = n.path.length > 28 ? "…" + n.path.slice(-27) : n.path;
      var title = el("title"); title.textContent = n.path + " (" + status + ")";
      var sub = el("text", { x: 8, y: p.height / 2 + 11, "class": "muted" });
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
    if (!window.dagre) { container.textContent = "The graph could not be drawn: its layout script did not load."; return; }
    fetch(container.dataset.src, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (g) { draw(container, g); container.dataset.drawn = "true"; })
      .catch(function (err) { container.textContent = "The graph could not be drawn: " + err; });
  }

  document.addEventListener("DOMContentLoaded", function () { live(); graph(); });
})();
