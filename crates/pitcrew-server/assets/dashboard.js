// The pitcrew dashboard: reads the API with the bearer token and follows its event stream.
//
// Everything the API returns came from a user or a model (descriptions, targets, errors,
// findings, generated text, model names): it is only ever written as text (textContent) or
// as numeric SVG attributes, never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "pitcrew.token";
  // How often the page reads the queue when no event says it changed.
  const REFRESH_MS = 5000;
  // Events that change the queue's counts or results, read again at most this often.
  const EVENT_REFRESH_MS = 300;
  // The most generated text kept per running task (its tail).
  const GENERATION_KEPT = 20000;
  // Tasks whose generation is kept at once (the oldest is dropped first).
  const GENERATIONS_KEPT = 50;
  // The longest summary of why a result was not accepted; the rest is one click away.
  const SUMMARY_CHARS = 90;
  const STATUSES = ["queued", "running", "completed", "failed", "possible_bug", "cancelled"];

  const page = {
    token: sessionStorage.getItem(TOKEN_KEY),
    // task id -> the generated text streamed for it so far
    generation: new Map(),
    // task id -> the latest progress message
    progress: new Map(),
    refreshing: null,
    refreshAgain: false,
    refreshTimer: null,
    eventRefreshTimer: null,
    following: false,
  };

  class Unauthorized extends Error {}

  const byId = (id) => document.getElementById(id);

  // An element with `text` as its text content and `children` appended.
  function el(tag, { className, text, title } = {}, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (title) node.title = String(title);
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function headers(accept) {
    const h = { Accept: accept };
    if (page.token) h.Authorization = "Bearer " + page.token;
    return h;
  }

  async function api(path) {
    const response = await fetch(path, { headers: headers("application/json"), cache: "no-store" });
    if (response.status === 401) throw new Unauthorized();
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        message = (await response.json()).error.message;
      } catch (_) {
        // Not an error of the API's shape: the status says enough.
      }
      throw new Error(path + ": " + message);
    }
    return response.json();
  }

  // --- formatting -------------------------------------------------------------------------

  const handle = (seq) => "#" + seq;
  const usd = (value) => (value === null || value === undefined ? "—" : "$" + value.toFixed(4));
  const percent = (ratio) => (ratio === null || ratio === undefined ? "—" : Math.round(ratio * 100) + "%");
  const fixed = (value, digits) => (value === null || value === undefined ? "—" : value.toFixed(digits));
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "—");
  const duration = (ms) =>
    ms === null || ms === undefined ? "—" : ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(2) + " s";
  const label = (status) => status.replace("_", " ");
  const shorten = (text, most) => (text.length > most ? text.slice(0, most - 1) + "…" : text);

  function statusPill(status) {
    const pill = el("span", { className: "pill", text: label(status) });
    pill.dataset.state = status;
    return pill;
  }

  // --- the token ----------------------------------------------------------------------------

  function askForToken(refused) {
    if (refused) {
      // Not kept: a reload would only be refused again.
      sessionStorage.removeItem(TOKEN_KEY);
      page.token = null;
    }
    // Nothing is read until a token is given (start() resumes).
    clearInterval(page.refreshTimer);
    page.refreshTimer = null;
    byId("dashboard").hidden = true;
    byId("forget-token").hidden = true;
    byId("token-form").hidden = false;
    const error = byId("token-error");
    error.hidden = !refused;
    error.textContent = refused ? "The server refused that token." : "";
    setConnection("idle", "token needed");
    byId("token-input").focus();
  }

  function forgetToken() {
    sessionStorage.removeItem(TOKEN_KEY);
    page.token = null;
    window.location.reload();
  }

  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const given = byId("token-input").value.trim();
    if (!given) return;
    page.token = given;
    sessionStorage.setItem(TOKEN_KEY, given);
    byId("token-input").value = "";
    start();
  });
  byId("forget-token").addEventListener("click", forgetToken);

  // --- reading the API ----------------------------------------------------------------------

  function setConnection(state, text) {
    const connection = byId("connection");
    connection.dataset.state = state;
    connection.textContent = text;
  }

  function showFailure(error) {
    const failure = byId("failure");
    failure.hidden = !error;
    failure.textContent = error ? "Could not read the API: " + error.message : "";
  }

  // Reads everything the page shows, once at a time; a call while one runs asks for another.
  async function refresh() {
    if (page.refreshing) {
      page.refreshAgain = true;
      return page.refreshing;
    }
    page.refreshing = (async () => {
      do {
        page.refreshAgain = false;
        const [queue, running, dashboard, models, metrics] = await Promise.all([
          api("/api/v1/queue"),
          api("/api/v1/tasks?status=running&limit=100"),
          api("/api/v1/dashboard"),
          api("/api/v1/models"),
          api("/api/v1/metrics"),
        ]);
        renderQueue(queue);
        renderRunning(running.tasks);
        renderResults(dashboard.results);
        renderModels(models, metrics);
        renderSpend(dashboard.spend);
        byId("updated").textContent = "updated " + new Date().toLocaleTimeString();
      } while (page.refreshAgain);
    })();
    try {
      await page.refreshing;
      showFailure(null);
    } finally {
      page.refreshing = null;
    }
  }

  function refreshSoon() {
    if (page.eventRefreshTimer) return;
    page.eventRefreshTimer = setTimeout(() => {
      page.eventRefreshTimer = null;
      refresh().catch(onRefreshError);
    }, EVENT_REFRESH_MS);
  }

  function onRefreshError(error) {
    if (error instanceof Unauthorized) {
      askForToken(Boolean(page.token));
    } else {
      showFailure(error);
    }
  }

  async function start() {
    try {
      await refresh();
    } catch (error) {
      onRefreshError(error);
      // A server that failed to answer may answer later; a refused token waits for another.
      if (!(error instanceof Unauthorized)) setTimeout(start, REFRESH_MS);
      return;
    }
    byId("token-form").hidden = true;
    byId("dashboard").hidden = false;
    byId("forget-token").hidden = !page.token;
    if (!page.refreshTimer) {
      page.refreshTimer = setInterval(() => refresh().catch(onRefreshError), REFRESH_MS);
    }
    if (!page.following) follow();
  }

  // --- the event stream ---------------------------------------------------------------------

  // Follows /api/v1/events with fetch (EventSource cannot send the token), reconnecting
  // after a pause when the stream ends or fails.
  async function follow() {
    page.following = true;
    let pause = 1000;
    for (;;) {
      try {
        const response = await fetch("/api/v1/events", {
          headers: headers("text/event-stream"),
          cache: "no-store",
        });
        if (response.status === 401) {
          page.following = false;
          askForToken(Boolean(page.token));
          return;
        }
        if (!response.ok || !response.body) throw new Error("status " + response.status);
        setConnection("live", "live");
        pause = 1000;
        // Events sent while the stream was down are lost: read the state again.
        refreshSoon();
        await readEvents(response.body);
      } catch (_) {
        // Reconnected below.
      }
      setConnection("down", "reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 30000);
    }
  }

  async function readEvents(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // An event ends with a blank line (the server writes plain `\n` line ends).
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""));
        if (data.length === 0) continue; // a keep-alive comment
        try {
          onEvent(JSON.parse(data.join("\n")));
        } catch (_) {
          // Not an event of ours: skipped.
        }
      }
    }
  }

  function onEvent(event) {
    switch (event.type) {
      case "output":
        appendGeneration(event.task, event.text);
        break;
      case "progress":
        page.progress.set(event.task, event.message);
        updateRunningTask(event.task);
        break;
      case "started":
        page.generation.delete(event.task);
        page.progress.delete(event.task);
        refreshSoon();
        break;
      case "finished":
      case "retry_scheduled":
      case "lease_lost":
      case "released":
      case "rescued":
      case "lagged":
        refreshSoon();
        break;
      default:
        break;
    }
  }

  function appendGeneration(task, text) {
    let kept = (page.generation.get(task) || "") + text;
    if (kept.length > GENERATION_KEPT) kept = kept.slice(kept.length - GENERATION_KEPT);
    // Re-inserted so that the map's order is the order of the latest output.
    page.generation.delete(task);
    page.generation.set(task, kept);
    while (page.generation.size > GENERATIONS_KEPT) {
      page.generation.delete(page.generation.keys().next().value);
    }
    updateRunningTask(task);
  }

  // --- rendering ----------------------------------------------------------------------------

  function renderQueue(queue) {
    const counts = new Map(STATUSES.map((status) => [status, { total: 0, byPriority: [] }]));
    for (const { status, priority, count } of queue.counts) {
      const entry = counts.get(status);
      if (!entry) continue;
      entry.total += count;
      entry.byPriority.push(count + " " + priority);
    }
    const tiles = STATUSES.map((status) => {
      const { total, byPriority } = counts.get(status);
      const tile = el(
        "div",
        { className: "tile" },
        el("span", { className: "count", text: total }),
        el("span", { className: "label", text: label(status) }),
        el("span", { className: "detail muted", text: total ? byPriority.join(", ") : "" }),
      );
      tile.dataset.status = status;
      return tile;
    });
    tiles.push(
      el(
        "div",
        { className: "tile total" },
        el("span", { className: "count", text: queue.total }),
        el("span", { className: "label", text: "in the store" }),
      ),
    );
    byId("queue-counts").replaceChildren(...tiles);
  }

  function renderRunning(tasks) {
    const container = byId("running-tasks");
    const shown = new Map([...container.children].map((node) => [node.dataset.task, node]));
    const rows = tasks.map((task) => {
      const row = shown.get(task.id) || runningRow(task);
      fillRunningRow(row, task);
      return row;
    });
    container.replaceChildren(...rows);
    byId("running-empty").hidden = tasks.length > 0;
  }

  function runningRow(task) {
    const row = el(
      "article",
      { className: "running-task" },
      el("div", { className: "task-head" }),
      el("p", { className: "progress muted" }),
      el("pre", { className: "generation" }),
    );
    row.dataset.task = task.id;
    return row;
  }

  function fillRunningRow(row, task) {
    row.querySelector(".task-head").replaceChildren(
      el("strong", { text: handle(task.seq) }),
      " ",
      el("span", { className: "kind", text: task.kind }),
      " ",
      el("code", { text: task.targets.join(" ") }),
      " ",
      el("span", { className: "description", text: task.description }),
      " ",
      el("span", {
        className: "muted",
        text: "attempt " + task.attempts + (task.lease_owner ? " on " + task.lease_owner : ""),
      }),
    );
    updateRunningTask(task.id, row);
  }

  function updateRunningTask(taskId, row) {
    row = row || [...byId("running-tasks").children].find((node) => node.dataset.task === taskId);
    if (!row) return;
    const progress = page.progress.get(taskId);
    row.querySelector(".progress").textContent = progress || "";
    const generation = row.querySelector(".generation");
    const text = page.generation.get(taskId);
    generation.textContent =
      text === undefined ? "(no generation streamed here: tasks worked by other processes are not followed)" : text;
    generation.classList.toggle("muted", text === undefined);
    generation.scrollTop = generation.scrollHeight;
  }

  function renderResults(results) {
    const rows = results.map((result) => {
      const row = el(
        "tr",
        {},
        el("td", {}, el("strong", { text: handle(result.seq) }), el("div", { className: "muted", text: result.kind })),
        el(
          "td",
          {},
          el("code", { text: result.targets.join(" ") }),
          el("div", { className: "description", text: result.description }),
          el("div", { className: "muted", text: "ended " + time(result.finished_at) + ", " + result.attempts + " attempt(s)" }),
        ),
        el("td", {}, statusPill(result.status)),
        el("td", { text: result.model || "—" }),
        el("td", { className: "number", text: usd(result.cost_usd) }),
        el("td", { className: "number", text: fixed(result.quality, 2) }),
        el("td", {}, evidenceList(result)),
        el("td", {}, whyNot(result)),
        el("td", {}, patchLink(result)),
      );
      row.dataset.task = result.task;
      row.dataset.status = result.status;
      return row;
    });
    byId("results-rows").replaceChildren(...rows);
    byId("results-table").hidden = results.length === 0;
    byId("results-empty").hidden = results.length > 0;
  }

  function evidenceList(result) {
    if (result.evidence.length === 0) return el("span", { className: "muted", text: "—" });
    return el("ul", { className: "evidence" }, ...result.evidence.map((line) => el("li", { text: line })));
  }

  function whyNot(result) {
    const parts = [];
    if (result.error) parts.push(el("p", { className: "error-text", text: result.error }));
    for (const finding of result.findings) {
      const where = [finding.file, finding.line].filter((part) => part !== null && part !== undefined).join(":");
      parts.push(
        el(
          "div",
          { className: "finding" },
          el("span", { className: "rule", text: finding.rule }),
          where ? el("code", { text: " " + where }) : null,
          el("pre", { text: finding.message }),
        ),
      );
    }
    for (const failing of result.failing_tests) {
      parts.push(
        el(
          "div",
          { className: "finding" },
          el("span", { className: "rule", text: "fails against the code" }),
          el("code", { text: " " + failing.test }),
          el("pre", { text: failing.failure }),
        ),
      );
    }
    if (parts.length === 0) return el("span", { className: "muted", text: "—" });
    const summary = result.error ? shorten(result.error.split("\n")[0], SUMMARY_CHARS) : parts.length + " finding(s)";
    return el("details", {}, el("summary", { text: summary }), ...parts);
  }

  function patchLink(result) {
    if (!result.has_patch) return el("span", { className: "muted", text: "—" });
    const link = el("a", { text: result.status === "possible_bug" ? "failing tests" : "diff" });
    link.href = "#diff-" + encodeURIComponent(result.seq);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      showDiff(result).catch(onRefreshError);
    });
    return link;
  }

  async function showDiff(result) {
    const diff = await api("/api/v1/tasks/" + encodeURIComponent(result.task) + "/diff");
    byId("diff-title").textContent = "Patch of " + handle(diff.seq);
    const note = byId("diff-note");
    note.hidden = !diff.possible_bug;
    note.textContent = diff.possible_bug
      ? "A possible bug: these tests fail against the code. Judge them before applying."
      : "";
    byId("diff-text").textContent = diff.patch;
    byId("diff-panel").hidden = false;
    byId("diff-panel").scrollIntoView({ block: "nearest" });
  }

  byId("diff-close").addEventListener("click", () => {
    byId("diff-panel").hidden = true;
  });

  function renderModels(models, metrics) {
    const spentById = new Map(metrics.models.map((m) => [m.model, m.cost_usd]));
    // The models whose health says something: called, or cooling down, or with a circuit not
    // closed; before any call, the routing pool.
    let shown = models.filter(
      (m) => m.calls_seen > 0 || spentById.has(m.id) || m.circuit !== "closed" || m.cooldown_until,
    );
    if (shown.length === 0) shown = models.filter((m) => m.in_fallback);
    const rows = shown.map((model) => {
      const circuit = el("span", { className: "pill", text: model.circuit });
      circuit.dataset.state = model.circuit.startsWith("open") ? "failed" : model.circuit === "half-open" ? "queued" : "completed";
      const cooldown = model.cooldown_until
        ? "until " + time(model.cooldown_until) + (model.cooldown_reason ? " (" + model.cooldown_reason + ")" : "")
        : "—";
      const row = el(
        "tr",
        {},
        el("td", {}, el("strong", { text: model.name }), el("div", { className: "muted", text: model.provider + " · " + model.id })),
        el("td", {}, circuit),
        el("td", { text: cooldown }),
        el("td", { className: "number", text: percent(model.success_rate) }),
        el("td", { className: "number", text: duration(model.p50_latency_ms) }),
        el("td", { className: "number", text: model.calls_seen }),
        el("td", {
          className: "number",
          text: model.free ? "free" : "$" + model.price_in_per_mtok.toFixed(2) + " / $" + model.price_out_per_mtok.toFixed(2),
        }),
        el("td", { className: "number", text: usd(spentById.get(model.id)) }),
      );
      row.dataset.model = model.name;
      return row;
    });
    byId("model-rows").replaceChildren(...rows);
    const hidden = models.length - shown.length;
    byId("models-hidden").hidden = hidden === 0;
    byId("models-hidden").textContent =
      hidden + " more model(s) in the registry, not called yet (pitcrew models lists them all).";
  }

  // The running total of the spend as a line over time, in inline SVG.
  function renderSpend(points) {
    const chart = byId("spend-chart");
    byId("spend-empty").hidden = points.length > 0;
    if (points.length === 0) {
      chart.replaceChildren();
      return;
    }
    const width = 720;
    const height = 220;
    const margin = { left: 64, right: 16, top: 12, bottom: 28 };
    const times = points.map((p) => new Date(p.at).getTime());
    const first = times[0];
    const last = Math.max(times[times.length - 1], first + 1);
    const most = Math.max(points[points.length - 1].total_usd, 1e-9);
    const x = (t) => margin.left + ((t - first) / (last - first)) * (width - margin.left - margin.right);
    const y = (v) => height - margin.bottom - (v / most) * (height - margin.top - margin.bottom);

    const svg = svgEl("svg", { viewBox: "0 0 " + width + " " + height, role: "img", class: "chart" });
    svg.append(svgText("Spend over time, $" + most.toFixed(4) + " in all", "title"));
    svg.append(svgEl("line", { x1: margin.left, y1: y(0), x2: width - margin.right, y2: y(0), class: "axis" }));
    svg.append(svgEl("line", { x1: margin.left, y1: margin.top, x2: margin.left, y2: y(0), class: "axis" }));
    svg.append(svgLabel(margin.left - 6, y(most) + 4, "$" + most.toFixed(4), "end"));
    svg.append(svgLabel(margin.left - 6, y(0) + 4, "$0", "end"));
    svg.append(svgLabel(margin.left, height - 8, time(points[0].at), "start"));
    svg.append(svgLabel(width - margin.right, height - 8, time(points[points.length - 1].at), "end"));
    // A step line: the total holds until the next attempt ends.
    let path = "M" + x(first).toFixed(1) + " " + y(0).toFixed(1);
    points.forEach((p, i) => {
      path += " H" + x(times[i]).toFixed(1) + " V" + y(p.total_usd).toFixed(1);
    });
    svg.append(svgEl("path", { d: path, class: "line" }));
    const dot = svgEl("circle", { cx: x(times[times.length - 1]), cy: y(most), r: 3, class: "dot" });
    dot.append(svgText("$" + most.toFixed(4) + " at " + time(points[points.length - 1].at), "title"));
    svg.append(dot);
    chart.replaceChildren(svg);
  }

  const SVG = "http://www.w3.org/2000/svg";

  function svgEl(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    return node;
  }

  function svgText(text, tag) {
    const node = document.createElementNS(SVG, tag);
    node.textContent = text;
    return node;
  }

  function svgLabel(x, y, text, anchor) {
    const node = svgEl("text", { x, y, "text-anchor": anchor, class: "tick" });
    node.textContent = text;
    return node;
  }

  start();
})();
