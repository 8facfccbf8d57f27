// The status page of sockdispatch: reads /status.json once a second, draws the scoreboard
// and two charts (open connections and requests per second, per worker). Everything here is
// served by the status port itself; nothing is fetched from elsewhere.
"use strict";

(function () {
  const INTERVAL_MS = 1000;
  const HISTORY = 60; // samples kept per chart: one minute
  const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                  "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

  // What the page has drawn, for whoever looks at it from outside (and the tests).
  const page = { samples: 0, errors: 0, workers: 0, chartPoints: 0, lastError: "" };
  window.sockdispatchPage = page;

  let previous = null; // { at: ms, workers: Map slot -> worker }
  const series = { open: new Map(), requests: new Map() }; // slot -> [{t, v}]

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) {
      node.textContent = String(text);
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function rate(now, before, key, seconds) {
    if (!before || seconds <= 0 || now[key] < before[key]) {
      return 0; // first sample, or the slot's counters started again (a new worker)
    }
    return (now[key] - before[key]) / seconds;
  }

  function push(map, slot, t, v) {
    let points = map.get(slot);
    if (!points) {
      points = [];
      map.set(slot, points);
    }
    points.push({ t: t, v: v });
    while (points.length > HISTORY) {
      points.shift();
    }
  }

  function summary(doc) {
    const parts = ["port " + doc.port, doc.mode + " mode", "policy " + doc.policy,
                   "master pid " + doc.master_pid, "generation " + doc.generation,
                   doc.workers.length + " worker" + (doc.workers.length === 1 ? "" : "s")];
    if (doc.program && doc.program.id) {
      parts.push("program id " + doc.program.id);
    }
    const node = document.getElementById("summary");
    node.textContent = parts.join(" \u00b7 ");
    if (doc.stopping) {
      node.append(" ", element("span", "stopping: new connections refused", "warn"));
    }
    if (doc.stale) {
      node.append(" ", element("span", "master not running: stale state", "warn"));
    }
  }

  function verdictLine(doc, seconds) {
    const rates = [];
    for (const name of Object.keys(doc.verdicts)) {
      const before = previous && previous.verdicts ? previous.verdicts[name] : undefined;
      const perSecond = before === undefined || seconds <= 0 ? 0
          : (doc.verdicts[name] - before) / seconds;
      if (perSecond > 0) {
        rates.push(name + " " + perSecond.toFixed(1) + "/s");
      }
    }
    document.getElementById("verdicts").textContent =
        rates.length ? "Decisions: " + rates.join(", ") : "Decisions: none in the last second";
  }

  function table(doc, seconds) {
    const body = document.querySelector("#workers tbody");
    const rows = [];
    const most = Math.max(1, ...doc.workers.map((w) => w.open + w.queued));
    for (const w of doc.workers) {
      const before = previous ? previous.workers.get(w.slot) : null;
      const sameWorker = before && before.pid === w.pid ? before : null;
      const row = element("tr");
      row.dataset.slot = w.slot;
      if (w.draining) {
        row.className = "draining";
      }
      const open = element("td", undefined, "bar");
      const fill = element("span", undefined, "fill");
      fill.style.width = Math.round((w.open / most) * 6) + "rem";
      open.append(fill, String(w.open));
      row.append(element("td", w.slot), element("td", w.pid),
                 element("td", w.state + (w.draining ? " (draining)" : ""), "text"),
                 element("td", w.weight), open, element("td", w.queued),
                 element("td", rate(w, sameWorker, "accepted", seconds).toFixed(1)),
                 element("td", rate(w, sameWorker, "requests", seconds).toFixed(1)),
                 element("td", w.accepted), element("td", w.requests),
                 element("td", w.respawns), element("td", w.generation),
                 element("td", w.load_source, "text"));
      rows.push(row);
    }
    body.replaceChildren(...rows);
    page.workers = rows.length;
  }

  function record(doc, at, seconds) {
    const live = new Set();
    for (const w of doc.workers) {
      live.add(w.slot);
      const before = previous ? previous.workers.get(w.slot) : null;
      const sameWorker = before && before.pid === w.pid ? before : null;
      push(series.open, w.slot, at, w.open);
      if (previous) {
        push(series.requests, w.slot, at, rate(w, sameWorker, "requests", seconds));
      }
    }
    for (const map of [series.open, series.requests]) {
      for (const slot of [...map.keys()]) {
        if (!live.has(slot)) {
          map.delete(slot); // the slot was freed
        }
      }
    }
  }

  function draw(canvasId, map, now) {
    const canvas = document.getElementById(canvasId);
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 44, right = 88, top = 10, bottom = 22;
    const plotW = width - left - right, plotH = height - top - bottom;
    let most = 0;
    let points = 0;
    let oldest = now;
    for (const line of map.values()) {
      for (const p of line) {
        most = Math.max(most, p.v);
        oldest = Math.min(oldest, p.t);
      }
      points += line.length;
    }
    // Gridlines at a round step (1, 2 or 5 times a power of ten), at least 0..4; the time
    // axis spans what has been seen, from 20 s up to the minute kept.
    const step = roundStep(Math.max(most, 4) / 4);
    const highest = step * Math.ceil(Math.max(most, 4) / step);
    const span = Math.min(HISTORY * INTERVAL_MS, Math.max(20000, now - oldest));
    const x = (t) => left + plotW * (1 - (now - t) / span);
    const y = (v) => top + plotH * (1 - v / highest);

    g.strokeStyle = "#d0d5dd";
    g.fillStyle = "#667085";
    g.font = "11px system-ui, sans-serif";
    g.lineWidth = 1;
    for (let v = 0; v <= highest + step / 2; v += step) {
      g.beginPath();
      g.moveTo(left, y(v));
      g.lineTo(left + plotW, y(v));
      g.stroke();
      g.fillText(formatValue(v), 4, y(v) + 4);
    }
    g.fillText("-" + Math.round(span / 1000) + " s", left, height - 6);
    g.fillText("now", left + plotW - 20, height - 6);

    let legend = 0;
    for (const [slot, line] of [...map.entries()].sort((a, b) => a[0] - b[0])) {
      const color = COLORS[slot % COLORS.length];
      g.strokeStyle = color;
      g.lineWidth = 1.8;
      g.beginPath();
      line.forEach((p, i) => {
        if (i === 0) {
          g.moveTo(x(p.t), y(p.v));
        } else {
          g.lineTo(x(p.t), y(p.v));
        }
      });
      g.stroke();
      if (legend < 12) {
        g.fillStyle = color;
        g.fillRect(left + plotW + 10, top + legend * 15, 10, 10);
        g.fillStyle = "#1d2330";
        g.fillText("worker " + slot, left + plotW + 24, top + legend * 15 + 9);
        ++legend;
      }
    }
    return points;
  }

  function roundStep(value) {
    const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5]) {
      if (value <= step * magnitude) {
        return step * magnitude;
      }
    }
    return 10 * magnitude;
  }

  function formatValue(v) {
    return v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k" : String(+v.toFixed(1));
  }

  function show(doc) {
    const at = Date.now();
    const seconds = previous ? (at - previous.at) / 1000 : 0;
    summary(doc);
    table(doc, seconds);
    verdictLine(doc, seconds);
    record(doc, at, seconds);
    page.chartPoints = draw("open-chart", series.open, at) + draw("requests-chart",
                                                                  series.requests, at);
    previous = { at: at, workers: new Map(doc.workers.map((w) => [w.slot, w])),
                 verdicts: doc.verdicts };
    page.samples += 1;
    document.getElementById("updated").textContent =
        "updated " + new Date(at).toLocaleTimeString();
  }

  async function refresh() {
    try {
      const answer = await fetch("/status.json", { cache: "no-store" });
      if (!answer.ok) {
        throw new Error("/status.json answered " + answer.status);
      }
      show(await answer.json());
    } catch (error) {
      page.errors += 1;
      page.lastError = String(error && error.message ? error.message : error);
      const node = document.getElementById("updated");
      node.textContent = "cannot read the status: " + page.lastError;
      node.className = "warn";
    }
    setTimeout(refresh, INTERVAL_MS);
  }

  refresh();
})();
