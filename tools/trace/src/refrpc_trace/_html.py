"""``html``: a self-contained page with a sequence diagram and object life lines.

The page needs no network: its data is a JSON island and its drawing code is
inline. It shows the findings of ``check`` at the top (each evidence record
links to its row), a sequence diagram of the messages (one column per peer
incarnation, one row per message or notable event, in the merged order) with a
filter box, and one life line per object (creation to reclamation on the run's
time axis, with every step marked and listed).

Large runs are cut: the first ``message_limit`` messages and the first
``object_limit`` objects are drawn, and the page says so.
"""

from __future__ import annotations

import html
import json
from typing import Any

from refrpc.codec import TraceKind

from ._analysis import replay
from ._check import end_checks
from ._merge import Item, Status
from ._show import NOTABLE_EVENTS
from ._source import Progress, Run


class _Collector:
    def __init__(self, run: Run, message_limit: int, object_limit: int) -> None:
        self.run = run
        self.message_limit = message_limit
        self.object_limit = object_limit
        self.peers: dict[str, int] = {}
        self.rows: list[dict[str, Any]] = []
        self.by_send: dict[int, dict[str, Any]] = {}
        self.messages = 0
        self.cut_messages = False
        self.tracked: dict[str, None] = {}
        self.cut_objects = False
        for f in run.files:
            self.peer(f.label)

    def peer(self, label: str) -> int:
        if label not in self.peers:
            self.peers[label] = len(self.peers)
        return self.peers[label]

    def track(self, oid: str) -> bool:
        if oid in self.tracked:
            return True
        if len(self.tracked) >= self.object_limit:
            self.cut_objects = True
            return False
        self.tracked[oid] = None
        return True

    def item(self, it: Item) -> None:
        kind = it.rec.kind
        if kind is TraceKind.EVENT:
            if it.type in NOTABLE_EVENTS and not self.cut_messages:
                self.rows.append({"k": "event", "i": it.index, "t": round(it.time_s, 6), "p": self.peer(it.peer),
                                  "type": it.type, "text": it.text()})
            return
        if it.type == "Heartbeat":
            return
        if kind is TraceKind.SEND:
            if it.status != Status.FIRST:
                return
            if self.messages >= self.message_limit:
                self.cut_messages = True
                return
            self.messages += 1
            row = {"k": "msg", "i": it.index, "t": round(it.time_s, 6), "from": self.peer(it.peer),
                   "to": self.peer(it.remote), "type": it.type or "undecodable", "text": it.text()[3:],
                   "state": "sent", "ri": None, "rt": None}
            self.rows.append(row)
            self.by_send[it.index] = row
            return
        if it.status == Status.DELIVERED and it.pair in self.by_send:
            row = self.by_send.pop(it.pair)
            row.update(state="delivered", ri=it.index, rt=round(it.time_s, 6))
        elif it.status in (Status.UNPAIRED, Status.EARLY, Status.UNDECODABLE) and not self.cut_messages:
            if self.messages >= self.message_limit:
                self.cut_messages = True
                return
            self.messages += 1
            self.rows.append({"k": "msg", "i": it.index, "t": round(it.time_s, 6), "from": self.peer(it.remote),
                              "to": self.peer(it.peer), "type": it.type or "undecodable", "text": it.text()[3:],
                              "state": "received-only", "ri": it.index, "rt": round(it.time_s, 6)})


def page_data(run: Run, *, message_limit: int = 2000, object_limit: int = 200,
              progress: Progress | None = None) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data."""
    c = _Collector(run, message_limit, object_limit)
    r = replay(run, progress, track=c.track, each=c.item)
    end_checks(r)
    for row in c.by_send.values():
        if row["state"] == "sent":
            row["state"] = "not-received"
    owners = {}
    objects = []
    for oid in c.tracked:
        o = r.find(oid)
        steps = r.lifelines.get(oid, [])
        if not steps:
            continue
        owner = run.label(*o.owner) if o is not None and o.owner is not None else ""
        owners[oid] = owner
        objects.append({
            "id": oid, "owner": owner, "state": o.state if o is not None else "",
            "steps": [{"i": s.evidence.index, "t": round(s.evidence.time_s, 6), "peer": s.evidence.peer,
                       "what": s.what, "text": s.text} for s in steps],
        })
    findings = sorted(run.diag.findings, key=lambda f: (f.evidence[0].index if f.evidence else 0, f.requirement))
    end = max([row.get("rt") or row["t"] for row in c.rows] + [s["t"] for o in objects for s in o["steps"]] + [0.0])
    return {
        "peers": list(c.peers),
        "implementations": {f.label: f.implementation for f in run.files},
        "rows": c.rows,
        "objects": objects,
        "findings": [f.to_json() for f in findings],
        "problems": [p.to_json() for p in run.diag.problems],
        "cut": {"messages": c.cut_messages, "objects": c.cut_objects,
                "message_limit": message_limit, "object_limit": object_limit},
        "end_s": end,
    }


def render_html(data: dict[str, Any], title: str = "RefRPC trace") -> str:
    """The page for ``data`` (from :func:`page_data`)."""
    island = json.dumps(data, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")
    return _PAGE.replace("%TITLE%", html.escape(title)).replace("%DATA%", island)


_PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<script>
window.__traceErrors = [];
window.addEventListener("error", function (e) { window.__traceErrors.push(String(e.message)); });
</script>
<style>
body { font: 13px/1.4 system-ui, sans-serif; margin: 0 16px 32px; color: #1d1d1f; }
h1 { font-size: 20px; margin: 16px 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.muted { color: #666; } code, .mono { font-family: ui-monospace, monospace; font-size: 12px; }
#findings li { margin-bottom: 8px; } .req { font-weight: 600; color: #b3261e; }
#findings ol.ev { margin: 2px 0 0 0; padding-left: 18px; list-style: none; }
#findings ol.ev a { color: #1a57c9; text-decoration: none; }
.ok { color: #1b7f3b; font-weight: 600; }
#problems li { color: #8a5a00; }
#toolbar { position: sticky; top: 0; background: #fff; padding: 6px 0; z-index: 2; }
#filter { width: 320px; padding: 3px 6px; }
#seqwrap { overflow: auto; border: 1px solid #ddd; max-height: 70vh; }
svg text { font: 11px ui-monospace, monospace; }
.lifeline { stroke: #bbb; stroke-dasharray: 4 3; }
.peerhead rect { fill: #eef3fb; stroke: #7b96c4; } .peerhead text { font-weight: 600; }
.msg line { stroke: #2b5fb4; stroke-width: 1.4; } .msg.not-received line { stroke: #b3261e; stroke-dasharray: 5 3; }
.msg.received-only line { stroke: #7a7a7a; stroke-dasharray: 2 2; }
.msg.hl rect.band { fill: #fff3b0; } rect.band { fill: transparent; }
.event circle { fill: #b3261e; } .event text { fill: #b3261e; }
.objects { display: grid; grid-template-columns: 220px 1fr; gap: 2px 12px; align-items: center; }
.object .bar { position: relative; height: 14px; background: #f3f3f3; }
.object .span { position: absolute; top: 3px; height: 8px; background: #7b96c4; border-radius: 3px; }
.object .mark { position: absolute; top: 1px; width: 6px; height: 12px; margin-left: -3px; border-radius: 2px; background: #2b5fb4; }
.mark.freed, .mark.deleted { background: #555; } .mark.lost, .mark.owner-died, .mark.failed { background: #b3261e; }
.mark.borrowed, .mark.released { background: #1b7f3b; }
details.steps { grid-column: 1 / span 2; margin: 0 0 6px 12px; }
</style>
</head>
<body>
<h1>%TITLE%</h1>
<div id="summary" class="muted"></div>
<h2>Findings</h2>
<div id="findings"></div>
<ul id="problems"></ul>
<h2>Messages</h2>
<div id="toolbar"><input id="filter" type="search" placeholder="filter: message type, object or task id, peer">
 <span id="count" class="muted"></span></div>
<div id="seqwrap"><svg id="sequence" xmlns="http://www.w3.org/2000/svg"></svg></div>
<div id="cutnote" class="muted"></div>
<h2>Object life lines</h2>
<div id="objects" class="objects"></div>
<script type="application/json" id="trace-data">%DATA%</script>
<script>
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("trace-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  function el(tag, attrs, text, ns) {
    var e = ns ? document.createElementNS(NS, tag) : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function svg(tag, attrs, text) { return el(tag, attrs, text, true); }

  var peers = data.peers, rows = data.rows;
  document.getElementById("summary").textContent =
    peers.length + " peer incarnations, " + rows.filter(function (r) { return r.k === "msg"; }).length +
    " messages shown, " + data.objects.length + " objects, " + data.findings.length + " findings; run length " +
    data.end_s.toFixed(3) + " s";

  // ---- findings
  var fdiv = document.getElementById("findings");
  if (data.findings.length === 0) {
    fdiv.appendChild(el("p", {"class": "ok"}, "No findings."));
  } else {
    var ol = el("ol", {});
    data.findings.forEach(function (f) {
      var li = el("li", {"class": "finding", "data-requirement": f.requirement});
      li.appendChild(el("span", {"class": "req"}, "[" + f.requirement + "] "));
      li.appendChild(el("span", {}, f.kind + ": " + f.summary));
      var evs = el("ol", {"class": "ev mono"});
      f.evidence.forEach(function (e) {
        var item = el("li", {});
        var a = el("a", {"href": "#row-" + e.index}, "#" + e.index);
        item.appendChild(a);
        item.appendChild(document.createTextNode(" " + e.time_s.toFixed(6) + "s " + e.peer + "  " + e.text));
        evs.appendChild(item);
      });
      li.appendChild(evs);
      ol.appendChild(li);
    });
    fdiv.appendChild(ol);
  }
  var pul = document.getElementById("problems");
  data.problems.forEach(function (p) {
    pul.appendChild(el("li", {"class": "problem"}, p.severity + ": " + (p.path ? p.path + ": " : "") + p.message));
  });

  // ---- sequence diagram
  var COL = 170, LEFT = 110, TOP = 46, ROW = 22;
  var seq = document.getElementById("sequence");
  function x(p) { return LEFT + p * COL; }
  function draw(filter) {
    while (seq.firstChild) { seq.removeChild(seq.firstChild); }
    var shown = rows.filter(function (r) {
      if (!filter) { return true; }
      var hay = (r.type + " " + r.text + " " + peers[r.p !== undefined ? r.p : r.from] + " " +
                 (r.to !== undefined ? peers[r.to] : "")).toLowerCase();
      return hay.indexOf(filter) >= 0;
    });
    var height = TOP + (shown.length + 1) * ROW + 10, width = LEFT + peers.length * COL + 420;
    seq.setAttribute("width", width); seq.setAttribute("height", height);
    seq.setAttribute("viewBox", "0 0 " + width + " " + height);
    var defs = svg("defs", {});
    var marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7",
                                markerHeight: "7", orient: "auto-start-reverse"});
    marker.appendChild(svg("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: "#2b5fb4"}));
    defs.appendChild(marker); seq.appendChild(defs);
    peers.forEach(function (name, p) {
      seq.appendChild(svg("line", {"class": "lifeline", x1: x(p), y1: TOP, x2: x(p), y2: height - 4}));
      var g = svg("g", {"class": "peerhead"});
      g.appendChild(svg("rect", {x: x(p) - 70, y: 6, width: 140, height: 24, rx: 4}));
      var t = svg("text", {x: x(p), y: 22, "text-anchor": "middle"}, name);
      t.appendChild(svg("title", {}, data.implementations[name] || "no trace"));
      g.appendChild(t); seq.appendChild(g);
    });
    shown.forEach(function (r, k) {
      var y = TOP + (k + 1) * ROW;
      var g = svg("g", {"class": r.k === "msg" ? "msg " + r.state : "event", id: "row-" + r.i,
                        "data-index": r.i});
      g.appendChild(svg("rect", {"class": "band", x: 0, y: y - ROW + 6, width: LEFT + peers.length * COL, height: ROW}));
      g.appendChild(svg("text", {x: 4, y: y, fill: "#888"}, "#" + r.i));
      if (r.k === "msg") {
        var x1 = x(r.from), x2 = x(r.to);
        if (r.state === "not-received") { x2 = x1 + (x2 - x1) * 0.6; }
        if (x1 === x2) { x2 = x1 + 30; }
        g.appendChild(svg("line", {x1: x1, y1: y, x2: x2, y2: y, "marker-end": "url(#arrow)"}));
        if (r.state === "not-received") {
          g.appendChild(svg("text", {x: x2 + 4, y: y + 4, fill: "#b3261e"}, "\u2717"));
        }
        var lx = Math.min(x1, x2) + 6;
        var label = r.type + (r.text.indexOf(r.type) >= 0 ? r.text.slice(r.text.indexOf(r.type) + r.type.length, 60 + r.type.length) : "");
        g.appendChild(svg("text", {x: lx, y: y - 3}, label));
        var tip = "#" + r.i + " " + r.t.toFixed(6) + "s " + peers[r.from] + " -> " + peers[r.to] + ": " + r.text +
          (r.ri ? "  (received #" + r.ri + " at " + r.rt.toFixed(6) + "s)" : "  (" + r.state + ")");
        g.appendChild(svg("title", {}, tip));
      } else {
        g.appendChild(svg("circle", {cx: x(r.p), cy: y - 4, r: 4}));
        g.appendChild(svg("text", {x: x(r.p) + 8, y: y}, r.type + ": " + r.text.replace(/^event \S+ ?/, "").slice(0, 60)));
        g.appendChild(svg("title", {}, "#" + r.i + " " + r.t.toFixed(6) + "s " + peers[r.p] + ": " + r.text));
      }
      seq.appendChild(g);
    });
    document.getElementById("count").textContent = shown.length + " of " + rows.length + " rows";
  }
  draw("");
  document.getElementById("filter").addEventListener("input", function (e) {
    draw(e.target.value.trim().toLowerCase());
  });
  var cut = [];
  if (data.cut.messages) { cut.push("only the first " + data.cut.message_limit + " messages are drawn"); }
  if (data.cut.objects) { cut.push("only the first " + data.cut.object_limit + " objects are drawn"); }
  document.getElementById("cutnote").textContent = cut.length ? "This run is large: " + cut.join("; ") +
    " (refrpc-trace html --limit / --objects)." : "";

  // ---- object life lines
  var odiv = document.getElementById("objects");
  var t0 = data.end_s;
  data.objects.forEach(function (o) { o.steps.forEach(function (s) { t0 = Math.min(t0, s.t); }); });
  var span = data.end_s - t0 > 0 ? data.end_s - t0 : 1;
  function pct(t) { return (100 * (t - t0) / span).toFixed(3) + "%"; }
  data.objects.forEach(function (o) {
    var name = el("div", {"class": "object-name mono", title: "owner " + (o.owner || "?")}, o.id);
    var row = el("div", {"class": "object", "data-object": o.id});
    var bar = el("div", {"class": "bar"});
    var start = o.steps[0].t, stop = data.end_s;
    o.steps.forEach(function (s) { if (s.what === "freed" || s.what === "deleted") { stop = Math.min(stop, s.t); } });
    var life = el("div", {"class": "span"});
    life.style.left = pct(start);
    life.style.width = "calc(" + (100 * Math.max(stop - start, 0) / span).toFixed(3) + "% + 2px)";
    bar.appendChild(life);
    o.steps.forEach(function (s) {
      var mk = el("div", {"class": "mark step " + s.what, title: "#" + s.i + " " + s.t.toFixed(6) + "s " + s.peer + ": " + s.what + " - " + s.text});
      mk.style.left = pct(s.t);
      bar.appendChild(mk);
    });
    row.appendChild(bar);
    odiv.appendChild(name); odiv.appendChild(row);
    var det = el("details", {"class": "steps"});
    det.appendChild(el("summary", {}, o.steps.length + " steps (owner " + (o.owner || "?") + ", " + (o.state || "state unknown") + " at the end)"));
    var ul = el("ul", {"class": "mono"});
    o.steps.forEach(function (s) {
      ul.appendChild(el("li", {}, "#" + s.i + " " + s.t.toFixed(6) + "s " + s.peer + "  " + s.what + ": " + s.text));
    });
    det.appendChild(ul); odiv.appendChild(det);
  });
  document.body.setAttribute("data-rendered", "1");
})();
</script>
</body>
</html>
"""
