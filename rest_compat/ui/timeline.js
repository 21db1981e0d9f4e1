// Marvin's timeline page: nodes as rows, time as the axis, one bar per
// schedule coloured by status, drawn on one <canvas> (only the rows in view),
// fed by the REST API (resources, schedules.json, schedules/find) and kept
// live by polling ui/changes. No library, no build step.
(function () {
  "use strict";

  const COLOURS = {
    allocated: "#d9c8f2", queued: "#c9ced8", defined: "#9aa5b8", requested: "#a98ad6",
    deployed: "#3f82d9", delayed: "#e6b53c", started: "#25a55f", restarted: "#1f8a4f",
    stopped: "#2a6f97", finished: "#17324d", failed: "#d9443b", canceled: "#bcbcbc", aborted: "#8c2f28",
  };
  const ROW = 22, HEAD = 38, LABEL = 170;
  const MIN_SPAN = 3600, MAX_SPAN = 8 * 7 * 86400, MAX_FETCH = 60 * 86400;
  const POLL_MS = 1500;
  const base = location.pathname.replace(/ui\/[^/]*$/, "");
  const offline = new URLSearchParams(location.search).has("offline");

  const canvas = document.getElementById("canvas");
  const context = canvas.getContext("2d", { alpha: false });
  const $ = (id) => document.getElementById(id);

  const state = {
    nodes: [], rows: [], byNode: new Map(), byId: new Map(), maintenance: [],
    view: { start: 0, span: 6 * 3600 }, scroll: 0, selected: null, history: new Map(),
    skew: 0, version: null, loaded: null, slots: [], filters: { nodetypes: "", user: "", experiment: "" },
    frames: [], ready: false, dirty: false, fetching: null,
  };

  function now() { return Date.now() / 1000 + state.skew; }

  async function api(path) {
    const response = await fetch(base + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      throw new Error((body && body.message) || ("HTTP " + response.status));
    }
    return body;
  }

  function say(text) { $("message").textContent = text || ""; }

  // -- data ----------------------------------------------------------------

  function setNodes(nodes) {
    state.nodes = nodes;
    state.rows = nodes.slice().sort((a, b) => {
      const x = Number(a.id), y = Number(b.id);
      return (isNaN(x) || isNaN(y)) ? String(a.id).localeCompare(String(b.id)) : x - y;
    });
    state.rowOf = new Map(state.rows.map((n, i) => [String(n.id), i]));
  }

  function setEvents(events, maintenance) {
    const at = now();
    const byNode = new Map(), byId = new Map();
    for (const e of events) {
      byId.set(e.id, e);
      const key = String(e.nodeid);
      if (!byNode.has(key)) byNode.set(key, []);
      byNode.get(key).push(e);
      const seen = state.history.get(e.id);
      if (!seen) {
        state.history.set(e.id, [{ status: e.status, at: e.updated || at, first: true }]);
      } else if (seen[seen.length - 1].status !== e.status && !seen.some((s) => s.status === e.status && s.at >= (e.updated || at))) {
        seen.push({ status: e.status, at: e.updated || at });
      }
    }
    for (const list of byNode.values()) list.sort((a, b) => a.start - b.start);
    state.byNode = byNode;
    state.byId = byId;
    if (maintenance) state.maintenance = maintenance;
    if (state.selected !== null) showDetails(state.byId.get(state.selected));
  }

  function fetchWindow() {
    const span = state.view.span;
    let start = Math.floor(state.view.start - span), stop = Math.ceil(state.view.start + 2 * span);
    if (stop - start > MAX_FETCH) { start = Math.floor(state.view.start); stop = start + MAX_FETCH; }
    return { start, stop };
  }

  function query(extra) {
    const params = new URLSearchParams(extra);
    if (state.filters.nodetypes) params.set("nodetypes", state.filters.nodetypes);
    return params.toString();
  }

  async function loadNodes() {
    setNodes(await api("v1/resources" + (state.filters.nodetypes ? "?" + query({}) : "")));
  }

  async function loadEvents() {
    const window = fetchWindow();
    const feed = await api("v1/schedules.json?" + query({ start: window.start, stop: window.stop }));
    state.skew = feed.now - Date.now() / 1000;
    state.loaded = window;
    setEvents(feed.events, feed.maintenance);
  }

  async function refresh(withNodes) {
    if (offline) return;
    if (state.fetching) {
      // One fetch at a time; a request for nodes too runs after the current one.
      if (!withNodes) return state.fetching;
      return state.fetching.then(() => refresh(true));
    }
    state.fetching = (async () => {
      try {
        if (withNodes) await loadNodes();
        await loadEvents();
        say("");
        state.ready = state.ready || withNodes;
      } catch (e) {
        say(String(e.message || e));
      } finally {
        state.fetching = null;
        redraw();
      }
    })();
    return state.fetching;
  }

  function needMore() {
    const loaded = state.loaded;
    return !offline && (!loaded || state.view.start < loaded.start || state.view.start + state.view.span > loaded.stop);
  }

  async function poll() {
    if (!offline) {
      try {
        const changes = await api("ui/changes" + (state.version !== null ? "?since=" + state.version : ""));
        $("live").classList.add("on");
        for (const change of changes.statuses) {
          const seen = state.history.get(change.schedid);
          if (seen && !seen.some((s) => s.status === change.new && s.at === change.time)) {
            seen.push({ status: change.new, at: change.time, actor: change.actor });
          }
        }
        const moved = state.version !== null && changes.version !== state.version;
        state.version = changes.version;
        if (moved) await refresh(false);
      } catch (e) {
        $("live").classList.remove("on");
      }
    }
    redraw();
    setTimeout(poll, POLL_MS);
  }

  // -- filters ---------------------------------------------------------------

  function matches(needle, id, name) {
    if (!needle) return true;
    if (/^\d+$/.test(needle)) return String(id) === needle;
    return name !== null && name !== undefined && String(name).toLowerCase().includes(needle.toLowerCase());
  }

  function shown(e) {
    return matches(state.filters.user, e.ownerid, e.owner) && matches(state.filters.experiment, e.expid, e.experiment);
  }

  // -- drawing ---------------------------------------------------------------

  function geometry() {
    const width = canvas.clientWidth, height = canvas.clientHeight;
    return { width, height, plot: Math.max(1, width - LABEL) };
  }

  function xOf(t, g) { return LABEL + (t - state.view.start) / state.view.span * g.plot; }

  function redraw() {
    if (state.dirty) return;
    state.dirty = true;
    requestAnimationFrame(() => { state.dirty = false; draw(); });
  }

  const STEPS = [60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400];

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function tickLabel(t, step) {
    const d = new Date(t * 1000);
    const day = d.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" });
    if (step >= 86400) return day;
    const hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    return (d.getHours() === 0 && d.getMinutes() === 0) ? day : hm;
  }

  function draw() {
    const started = performance.now();
    const dpr = window.devicePixelRatio || 1;
    const g = geometry();
    if (canvas.width !== Math.round(g.width * dpr) || canvas.height !== Math.round(g.height * dpr)) {
      canvas.width = Math.round(g.width * dpr);
      canvas.height = Math.round(g.height * dpr);
    }
    const c = context;
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.fillStyle = "#ffffff";
    c.fillRect(0, 0, g.width, g.height);
    const maxScroll = Math.max(0, state.rows.length * ROW - (g.height - HEAD));
    state.scroll = Math.min(Math.max(0, state.scroll), maxScroll);
    const first = Math.floor(state.scroll / ROW);
    const last = Math.min(state.rows.length, first + Math.ceil((g.height - HEAD) / ROW) + 1);
    const t0 = state.view.start, t1 = t0 + state.view.span;

    c.save();
    c.beginPath();
    c.rect(0, HEAD, g.width, g.height - HEAD);
    c.clip();
    // rows: stripes, nodes in maintenance or disabled
    for (let i = first; i < last; i++) {
      const y = HEAD + i * ROW - state.scroll, node = state.rows[i];
      c.fillStyle = node.status === "maintenance" ? "#fbe9cf" : node.status === "active" ? (i % 2 ? "#f7f8fa" : "#ffffff") : "#eceef1";
      c.fillRect(LABEL, y, g.plot, ROW);
    }
    // maintenance windows of the policy
    c.fillStyle = "rgba(240, 160, 60, 0.18)";
    for (const w of state.maintenance) {
      if (w.stop < t0 || w.start > t1) continue;
      const x0 = Math.max(LABEL, xOf(w.start, g)), x1 = Math.min(g.width, xOf(w.stop, g));
      c.fillRect(x0, HEAD, x1 - x0, g.height - HEAD);
    }
    // free windows found
    c.setLineDash([4, 3]);
    c.strokeStyle = "#3f82d9";
    for (const s of state.slots) {
      if (s.stop < t0 || s.start > t1) continue;
      const x0 = xOf(s.start, g), x1 = xOf(s.stop, g);
      c.fillStyle = "rgba(63, 130, 217, 0.10)";
      c.fillRect(x0, HEAD, x1 - x0, g.height - HEAD);
      c.strokeRect(x0 + 0.5, HEAD + 0.5, x1 - x0, g.height - HEAD - 1);
    }
    c.setLineDash([]);
    // bars
    c.font = "11px system-ui, sans-serif";
    c.textBaseline = "middle";
    for (let i = first; i < last; i++) {
      const node = state.rows[i], list = state.byNode.get(String(node.id));
      if (!list) continue;
      const y = HEAD + i * ROW - state.scroll;
      for (const e of list) {
        if (e.stop < t0) continue;
        if (e.start > t1) break;
        if (!shown(e)) continue;
        const x0 = Math.max(LABEL, xOf(e.start, g)), x1 = Math.min(g.width, xOf(e.stop, g));
        const w = Math.max(2, x1 - x0);
        c.fillStyle = COLOURS[e.status] || "#777";
        c.fillRect(x0, y + 3, w, ROW - 6);
        if (e.id === state.selected) {
          c.strokeStyle = "#ff2d7a";
          c.lineWidth = 2;
          c.strokeRect(x0 - 1, y + 2, w + 2, ROW - 4);
          c.lineWidth = 1;
        }
        if (w > 50) {
          c.fillStyle = e.status === "defined" || e.status === "canceled" || e.status === "queued" ? "#1d2330" : "#ffffff";
          const label = (e.experiment || "exp " + e.expid) + " · " + e.status;
          c.save();
          c.beginPath();
          c.rect(x0, y, w, ROW);
          c.clip();
          c.fillText(label, x0 + 4, y + ROW / 2);
          c.restore();
        }
      }
    }
    c.restore();
    // axis
    c.fillStyle = "#f0f2f5";
    c.fillRect(0, 0, g.width, HEAD);
    c.strokeStyle = "#d5d9e0";
    c.beginPath();
    c.moveTo(0, HEAD - 0.5);
    c.lineTo(g.width, HEAD - 0.5);
    c.stroke();
    const step = STEPS.find((s) => s / state.view.span * g.plot >= 90) || STEPS[STEPS.length - 1];
    const zone = new Date(t0 * 1000).getTimezoneOffset() * 60;
    let tick = Math.ceil((t0 - zone) / step) * step + zone;
    if (step >= 86400) tick = Math.ceil((t0 - zone) / 86400) * 86400 + zone;
    c.fillStyle = "#445";
    c.font = "11px system-ui, sans-serif";
    for (; tick < t1; tick += step) {
      const x = Math.round(xOf(tick, g)) + 0.5;
      c.strokeStyle = "#e3e6eb";
      c.beginPath();
      c.moveTo(x, HEAD - 8);
      c.lineTo(x, g.height);
      c.stroke();
      c.fillText(tickLabel(tick, step), x + 3, HEAD - 12);
    }
    c.fillStyle = "#1d2330";
    c.fillText(new Date(t0 * 1000).toLocaleString() + "  —  " + humanSpan(state.view.span), LABEL + 4, 10);
    // now
    const tNow = now();
    if (tNow >= t0 && tNow <= t1) {
      const x = Math.round(xOf(tNow, g)) + 0.5;
      c.strokeStyle = "#e0245e";
      c.lineWidth = 2;
      c.beginPath();
      c.moveTo(x, HEAD - 6);
      c.lineTo(x, g.height);
      c.stroke();
      c.lineWidth = 1;
      c.fillStyle = "#e0245e";
      c.fillText("now", x + 3, HEAD - 2 - 11);
    }
    // labels column
    c.fillStyle = "#f7f8fa";
    c.fillRect(0, HEAD, LABEL, g.height - HEAD);
    c.strokeStyle = "#d5d9e0";
    c.beginPath();
    c.moveTo(LABEL - 0.5, 0);
    c.lineTo(LABEL - 0.5, g.height);
    c.stroke();
    c.fillStyle = "#1d2330";
    c.fillText(state.rows.length + " nodes", 6, HEAD - 12);
    for (let i = first; i < last; i++) {
      const y = HEAD + i * ROW - state.scroll, node = state.rows[i];
      if (y + ROW < HEAD) continue;
      c.fillStyle = node.status === "active" ? "#1d2330" : "#8a8f99";
      const text = node.id + "  " + (node.hostname || "") + (node.status !== "active" ? " (" + node.status + ")" : "");
      c.fillText(text.length > 28 ? text.slice(0, 27) + "…" : text, 6, y + ROW / 2);
    }
    state.frames.push(performance.now() - started);
    if (state.frames.length > 200) state.frames.shift();
  }

  function humanSpan(s) {
    if (s < 86400) return (s / 3600).toFixed(s % 3600 ? 1 : 0) + " h";
    if (s < 14 * 86400) return (s / 86400).toFixed(s % 86400 ? 1 : 0) + " d";
    return (s / 604800).toFixed(1) + " w";
  }

  // -- details ---------------------------------------------------------------

  function when(t) { return new Date(t * 1000).toLocaleString(); }

  function showDetails(e) {
    const box = $("details");
    box.replaceChildren();
    const title = document.createElement("h2");
    title.textContent = "Details";
    box.append(title);
    if (!e) {
      const p = document.createElement("p");
      p.className = "hint";
      p.textContent = "Click a bar for its details.";
      box.append(p);
      return;
    }
    const rows = [
      ["Schedule", String(e.id)],
      ["Experiment", (e.experiment ? e.experiment + " " : "") + "(#" + e.expid + ")"],
      ["Owner", e.owner ? e.owner + " (user " + e.ownerid + ")" : "user " + e.ownerid],
      ["Node", e.nodeid + (e.hostname ? " (" + e.hostname + ")" : "")],
      ["Start", when(e.start)],
      ["Stop", when(e.stop)],
      ["Status", e.status + (e.reason ? " — " + e.reason : "")],
    ];
    const list = document.createElement("dl");
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v;
      list.append(dt, dd);
    }
    box.append(list);
    const h = document.createElement("h2");
    h.textContent = "Status history";
    box.append(h);
    const ol = document.createElement("ol");
    ol.id = "history";
    for (const step of state.history.get(e.id) || []) {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = COLOURS[step.status] || "#777";
      li.append(swatch, step.status + (step.first ? " (since " : " (") + when(step.at) + (step.actor ? ", by " + step.actor : "") + ")");
      ol.append(li);
    }
    box.append(ol);
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = "History: the status when the page first saw the schedule, then each change since (from the core's events).";
    box.append(note);
  }

  function eventAt(x, y) {
    const g = geometry();
    if (x < LABEL || y < HEAD) return null;
    const node = state.rows[Math.floor((y - HEAD + state.scroll) / ROW)];
    if (!node) return null;
    const list = state.byNode.get(String(node.id)) || [];
    for (const e of list) {
      if (!shown(e)) continue;
      const x0 = xOf(e.start, g), x1 = Math.max(xOf(e.stop, g), x0 + 3);
      if (x >= x0 - 1 && x <= x1 + 1) return e;
    }
    return null;
  }

  // -- interaction -----------------------------------------------------------

  function setView(start, span) {
    state.view.span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, span));
    state.view.start = start;
    if (needMore()) refresh(false);
    redraw();
  }

  function zoom(factor, atX) {
    const g = geometry();
    const anchor = atX === undefined ? state.view.start + state.view.span / 2
      : state.view.start + (atX - LABEL) / g.plot * state.view.span;
    const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, state.view.span * factor));
    const ratio = (anchor - state.view.start) / state.view.span;
    setView(anchor - ratio * span, span);
  }

  let drag = null;
  canvas.addEventListener("mousedown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, start: state.view.start, scroll: state.scroll, moved: false };
    canvas.style.cursor = "grabbing";
  });
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    state.scroll = drag.scroll - dy;
    setView(drag.start - dx / geometry().plot * state.view.span, state.view.span);
  });
  window.addEventListener("mouseup", (ev) => {
    if (!drag) return;
    const moved = drag.moved;
    drag = null;
    canvas.style.cursor = "grab";
    if (!moved) {
      const r = canvas.getBoundingClientRect();
      const e = eventAt(ev.clientX - r.left, ev.clientY - r.top);
      state.selected = e ? e.id : null;
      showDetails(e);
      redraw();
    }
  });
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const r = canvas.getBoundingClientRect();
    if (ev.ctrlKey || ev.metaKey) {
      zoom(ev.deltaY > 0 ? 1.25 : 0.8, ev.clientX - r.left);
    } else if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
      const d = ev.shiftKey ? ev.deltaY : ev.deltaX;
      setView(state.view.start + d / geometry().plot * state.view.span, state.view.span);
    } else {
      state.scroll += ev.deltaY;
      redraw();
    }
  }, { passive: false });
  window.addEventListener("resize", redraw);

  for (const button of document.querySelectorAll("[data-span]")) {
    button.addEventListener("click", () => {
      const span = Number(button.dataset.span);
      setView(now() - span / 4, span);
    });
  }
  $("zoomin").addEventListener("click", () => zoom(0.5));
  $("zoomout").addEventListener("click", () => zoom(2));
  $("now").addEventListener("click", () => setView(now() - state.view.span / 4, state.view.span));
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.filters = {
      nodetypes: $("nodetypes").value.trim(), user: $("user").value.trim(), experiment: $("experiment").value.trim(),
    };
    state.scroll = 0;
    refresh(true);
  });

  $("find").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const params = new URLSearchParams({
      nodecount: $("findcount").value || "1",
      duration: String(Math.round(Number($("findminutes").value || "10") * 60)),
      results: "5",
    });
    const types = $("findtypes").value.trim() || state.filters.nodetypes;
    if (types) params.set("nodetypes", types);
    const list = $("slots");
    list.replaceChildren();
    try {
      state.slots = await api("v1/schedules/find?" + params.toString());
      for (const s of state.slots) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = "#";
        a.textContent = when(s.start) + " → " + when(s.stop);
        a.addEventListener("click", (e) => { e.preventDefault(); setView(s.start - state.view.span / 4, state.view.span); });
        li.append(a, " (" + s.max_nodecount + " nodes free, until " + when(s.max_stop) + ")");
        list.append(li);
      }
      if (!state.slots.length) list.textContent = "No free window.";
    } catch (e) {
      state.slots = [];
      list.textContent = String(e.message || e);
    }
    redraw();
  });

  const legend = $("legenditems");
  for (const [status, colour] of Object.entries(COLOURS)) {
    const li = document.createElement("li"), swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;
    li.append(swatch, status);
    legend.append(li);
  }

  // -- hooks for tests and the benchmark ----------------------------------------

  window.marvinTimeline = {
    state, draw, redraw, setView, refresh, colours: COLOURS,
    // The centre of schedule id's bar in CSS pixels of the canvas, or null.
    barCentre(id) {
      const e = state.byId.get(id);
      if (!e || !state.rowOf) return null;
      const row = state.rowOf.get(String(e.nodeid));
      if (row === undefined) return null;
      const g = geometry();
      const x0 = Math.max(LABEL, xOf(e.start, g)), x1 = Math.min(g.width, xOf(e.stop, g));
      const y = HEAD + row * ROW - state.scroll + ROW / 2;
      if (x1 <= x0 || y < HEAD || y > g.height) return null;
      // A point of the bar clear of the "now" line and of the label text.
      const xNow = xOf(now(), g);
      const left = [x0, Math.min(x1, xNow - 3)], right = [Math.max(x0, xNow + 3), x1];
      const [a, b] = (left[1] - left[0] >= right[1] - right[0]) ? left : right;
      if (b - a < 2) return null;
      // The bar's last pixel row: below the label's descenders ("deployed", "running").
      return { x: Math.round((a + b) / 2), y: Math.round(y + ROW / 2 - 4) };
    },
    pixel(x, y) {
      const dpr = window.devicePixelRatio || 1;
      const d = context.getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data;
      return "#" + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, "0")).join("");
    },
    // Synthetic data for the benchmark: nodeCount nodes, eventCount schedules.
    loadSynthetic(nodeCount, eventCount) {
      const statuses = Object.keys(COLOURS), t = now();
      const nodes = [];
      for (let i = 1; i <= nodeCount; i++) nodes.push({ id: i, hostname: "node-" + i, status: i % 50 ? "active" : "maintenance" });
      setNodes(nodes);
      const events = [];
      for (let i = 0; i < eventCount; i++) {
        const start = Math.floor(t - 7 * 86400 + ((i * 7919) % (28 * 86400)));
        events.push({ id: i + 1, nodeid: (i % nodeCount) + 1, hostname: "", expid: i % 500, ownerid: i % 20,
          experiment: "exp" + (i % 500), owner: null, start, stop: start + 1800 + (i % 7) * 3600,
          status: statuses[i % statuses.length], reason: "", updated: start });
      }
      setEvents(events, []);
      state.ready = true;
      redraw();
    },
  };

  // -- start -------------------------------------------------------------------

  setView(now() - 1.5 * 3600, 6 * 3600);
  if (!offline) {
    api("v1/backend/auth").then((me) => {
      $("who").textContent = me && me.user ? me.user.name + " (" + me.user.role + ")" : "";
    }).catch(() => {});
    refresh(true).then(() => setView(now() - state.view.span / 4, state.view.span));
    setTimeout(poll, POLL_MS);
  } else {
    redraw();
  }
})();
