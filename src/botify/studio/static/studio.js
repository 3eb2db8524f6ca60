// botify studio: three views over the studio's JSON API (/studio/api/...). Plain JavaScript,
// no build step; every text from the catalog goes in through textContent, never as HTML.
"use strict";

const API = "/studio/api/";
const state = { view: null, info: null, listener: null, current: null, served: null, session: [],
                selected: null, timers: [] };

// ---- helpers ----------------------------------------------------------------------------

function h(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function token() {
  return $("token").value.trim();
}

async function api(path, body, options = {}) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (options.admin && token()) headers["Authorization"] = "Bearer " + token();
  const response = await fetch(API + path, { method: body === undefined ? "GET" : "POST", headers,
                                             body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(answer.detail || ("HTTP " + response.status));
  return answer;
}

function tracks(count) {
  return count === 1 ? "1 track" : `${count} tracks`;
}

function fixed(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function signed(value) {
  return value === null || value === undefined ? "–" : (value >= 0 ? "+" : "") + value.toFixed(2);
}

function trackCells(track) {
  return [h("td", {}, track.title), h("td", {}, track.artist)];
}

function servedBy(served) {
  if (!served) return "you picked it";
  const treatments = Object.entries(served.experiments || {}).map(([name, treatment]) => name + " " + treatment);
  const who = served.recommender ? served.recommender + (served.fallback ? " (fallback)" : "") : "?";
  return (treatments.length ? treatments.join(", ") + " · " : "") + who;
}

// ---- views ------------------------------------------------------------------------------

function hashParts() {
  // "#watch", "#token=...", "#recommend&token=...": the view, and the admin token if given
  const parts = location.hash.replace("#", "").split("&").filter(Boolean);
  const view = parts.find((part) => !part.includes("="));
  const given = parts.find((part) => part.startsWith("token="));
  return { view, token: given ? decodeURIComponent(given.slice(6)) : null };
}

function route() {
  const view = hashParts().view;
  const name = ["listen", "recommend", "watch"].includes(view) ? view : "listen";
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.view = name;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== name;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === name);
  showError("");
  if (name === "recommend") { refreshQueue(); state.timers.push(setInterval(refreshQueue, 1000)); }
  if (name === "watch") { refreshWatch(); state.timers.push(setInterval(refreshWatch, 1000)); }
}

// ---- Listen -----------------------------------------------------------------------------

async function ensureListener(fresh) {
  let user = fresh ? null : Number(localStorage.getItem("botify-listener"));
  if (!user) {
    user = (await api("listener", {})).user;
    localStorage.setItem("botify-listener", String(user));
  }
  state.listener = user;
  $("listener").textContent = String(user);
}

function resultList(list, tracks, label, onPick) {
  list.replaceChildren(...tracks.map((track) => h("li", {},
    h("span", { class: "what" }, h("b", {}, track.title), " — ", track.artist,
      h("span", { class: "hint" }, "  ", (track.genres || []).join(", "))),
    h("button", { type: "button", onclick: () => onPick(track) }, label))));
  if (!tracks.length) list.replaceChildren(h("li", { class: "hint" }, "nothing matches"));
}

async function search(form, list, label, onPick) {
  const words = form.q.value.trim();
  if (!words) return;
  try {
    const found = await api("search?q=" + encodeURIComponent(words) + "&limit=20");
    resultList(list, found.tracks, label, onPick);
    showError("");
  } catch (error) { showError(error.message); }
}

function startSession(track) {
  state.session = [];
  state.current = track;
  state.served = null;
  $("session-over").hidden = true;
  renderListen();
}

function renderListen() {
  const playing = state.current !== null;
  $("pick-first").hidden = playing;
  $("playing").hidden = !playing;
  if (playing) {
    $("now-title").textContent = state.current.title;
    $("now-meta").textContent = state.current.artist + " · " + (state.current.genres || []).join(", ");
    $("now-served").textContent = "served by: " + servedBy(state.served);
  }
  const body = $("listen-session").tBodies[0];
  body.replaceChildren(...state.session.map((row, index) => h("tr", {},
    h("td", { class: "num" }, index + 1), ...trackCells(row.track), h("td", { class: "num" }, fixed(row.time, 2)),
    h("td", {}, servedBy(row.served)))));
  const total = state.session.reduce((sum, row) => sum + row.time, 0);
  $("session-total").textContent = state.session.length
    ? `${tracks(state.session.length)}, total time ${total.toFixed(2)}` : "";
}

async function play(share, leave) {
  if (state.current === null) return;
  const played = { track: state.current, time: share, served: state.served };
  const body = { user: state.listener, track: state.current.track, time: share };
  try {
    if (leave) {
      await api("last", body);
      state.session.push(played);
      state.current = null;
      const total = state.session.reduce((sum, row) => sum + row.time, 0);
      const over = $("session-over");
      over.replaceChildren(h("b", {}, "Session over"),
        ` — ${tracks(state.session.length)}, total time ${total.toFixed(2)}; it is in the event log as user ${state.listener}. `,
        "Pick a first track to listen again.");
      over.hidden = false;
    } else {
      const answer = await api("next", body);
      state.session.push(played);
      state.current = answer.record;
      state.served = { experiments: answer.experiments, recommender: answer.recommender, fallback: answer.fallback };
    }
    showError("");
  } catch (error) { showError(error.message); }
  renderListen();
}

// ---- Recommend --------------------------------------------------------------------------

async function refreshQueue() {
  let queue;
  try { queue = await api("queue"); } catch (error) { showError(error.message); return; }
  $("queue-size").textContent = queue.requests.length;
  $("answered").textContent = queue.answered;
  $("timed-out").textContent = queue.timed_out;
  const list = $("queue");
  list.replaceChildren(...queue.requests.map((request) => h("li", {
      class: request.request === state.selected ? "selected" : "", "data-request": request.request,
      onclick: () => selectRequest(request) },
    h("span", { class: "what" }, `listener ${request.user} · ${request.session.length} played`),
    h("span", { class: "hint" }, `${Math.ceil(request.deadline_in)} s left`))));
  if (!queue.requests.length) list.replaceChildren(h("li", { class: "hint" }, "no request is waiting"));
  if (state.selected !== null && !queue.requests.some((request) => request.request === state.selected)) {
    state.selected = null;
    $("request").hidden = true;
  }
}

async function selectRequest(request) {
  state.selected = request.request;
  $("request").hidden = false;
  $("request-title").textContent = `${request.request} · listener ${request.user}`;
  $("request-session").tBodies[0].replaceChildren(...request.session.map((listen, index) => h("tr", {},
    h("td", { class: "num" }, index + 1), ...trackCells(listen), h("td", { class: "num" }, fixed(listen.time, 2)))));
  $("recommend-results").replaceChildren();
  document.querySelectorAll("#queue li").forEach((item) =>
    item.classList.toggle("selected", Number(item.dataset.request) === request.request));
  const box = $("suggestions");
  box.replaceChildren(h("p", { class: "hint" }, "asking the recommenders…"));
  try {
    const found = await api("suggest?request=" + request.request);
    box.replaceChildren(...found.suggestions.map((suggestion) => h("div", { class: "suggestion" },
      h("b", {}, suggestion.recommender),
      h("ul", { class: "tracks" }, ...suggestion.tracks.map((track) => h("li", {},
        h("span", { class: "what" }, track.title, " — ", track.artist),
        h("button", { type: "button", onclick: () => answer(track) }, "send")))))));
  } catch (error) { box.replaceChildren(h("p", { class: "hint" }, error.message)); }
}

async function answer(track) {
  if (state.selected === null) return;
  try {
    await api("answer", { request: state.selected, track: track.track }, { admin: true });
    state.selected = null;
    $("request").hidden = true;
    showError("");
  } catch (error) { showError(error.message); }
  refreshQueue();
}

// ---- Watch ------------------------------------------------------------------------------

function drawTraffic(traffic) {
  const svg = $("traffic");
  const now = Math.floor(Date.now() / 1000);
  const counts = new Map(traffic.map((row) => [row.second, row.requests]));
  const top = Math.max(1, ...counts.values());
  const bars = [];
  for (let i = 0; i < 60; i++) {
    const count = counts.get(now - 59 + i) || 0;
    const height = 76 * count / top;
    const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    bar.setAttribute("x", i * 10 + 1); bar.setAttribute("width", 8);
    bar.setAttribute("y", 78 - height); bar.setAttribute("height", height);
    bars.push(bar);
  }
  svg.replaceChildren(...bars);
}

function setOptions(select, names, chosen) {
  const current = [...select.options].map((option) => option.value).join(",");
  if (current !== names.join(",")) select.replaceChildren(...names.map((name) => h("option", { value: name }, name)));
  if (chosen) select.value = chosen;
}

async function refreshWatch() {
  const chosen = $("experiment").value;
  let board;
  try { board = await api("watch" + (chosen ? "?experiment=" + encodeURIComponent(chosen) : "")); }
  catch (error) { showError(error.message); return; }
  setOptions($("experiment"), Object.keys(board.experiments), board.experiment);
  const now = Math.floor(Date.now() / 1000);
  const recent = board.traffic.filter((row) => row.second >= now - 10 && row.second < now);
  const requests = recent.reduce((sum, row) => sum + row.requests, 0);
  $("rps").textContent = (requests / 10).toFixed(1);
  const weighted = recent.reduce((sum, row) => sum + row.mean_ms * row.requests, 0);
  $("latency").textContent = requests ? (weighted / requests).toFixed(2) : "–";
  $("p99").textContent = recent.length ? Math.max(...recent.map((row) => row.p99_ms)).toFixed(2) : "–";
  $("lines").textContent = board.lines.toLocaleString("en");
  $("lines").dataset.value = board.lines;
  drawTraffic(board.traffic);
  const srm = $("srm");
  srm.classList.toggle("bad", board.srm);
  srm.dataset.value = board.srm_p_value === null ? "" : board.srm_p_value;
  srm.textContent = board.srm_p_value === null ? "" : board.srm
    ? `SAMPLE RATIO MISMATCH: users per treatment are not an even split (p = ${board.srm_p_value.toPrecision(2)}); do not trust this experiment`
    : `sample ratio check: p = ${board.srm_p_value.toPrecision(3)} (no mismatch)`;
  $("watch-note").textContent = board.note || (board.skipped ? `${board.skipped} log lines skipped (malformed or incomplete)` : "");
  const comparisons = new Map(board.comparisons.map((item) => [item.treatment, item]));
  $("verdict").tBodies[0].replaceChildren(...board.treatments.map((row) => {
    const item = comparisons.get(row.treatment);
    const verdict = item ? item.verdict : "";
    return h("tr", { "data-treatment": row.treatment, class: verdict },
      h("td", {}, row.treatment + (row.treatment === board.control ? " (control)" : "")),
      h("td", { class: "num", "data-field": "users" }, row.users),
      h("td", { class: "num", "data-field": "sessions" }, row.sessions),
      h("td", { class: "num", "data-field": "mean", "data-value": row.mean }, fixed(row.mean, 3)),
      h("td", { class: "num", "data-field": "effect", "data-value": item ? item.effect : "" }, item ? signed(item.effect) + "%" : ""),
      h("td", { class: "num", "data-field": "ci", "data-lower": item ? item.lower : "", "data-upper": item ? item.upper : "" },
        item ? `[${signed(item.lower)}, ${signed(item.upper)}]` : ""),
      h("td", { class: "num", "data-field": "p_holm", "data-value": item ? item.p_holm : "" },
        item ? item.p_holm.toPrecision(3) : ""));
  }));
  const open = new Set([...document.querySelectorAll("#recent details[open]")].map((node) => node.dataset.key));
  $("recent").replaceChildren(...board.recent.map((session) => {
    const key = session.user + "-" + session.session;
    return h("details", { "data-key": key, open: open.has(key) ? "" : null },
      h("summary", {}, `listener ${session.user}${session.agent ? " (" + session.agent + ")" : ""} · `,
        `${session.treatment || "no treatment"} · ${tracks(session.tracks.length)} · time ${fixed(session.time, 2)} · `,
        session.finished ? "finished" : "listening", " · ", new Date(session.ended).toLocaleTimeString("en-GB")),
      h("table", {}, h("tbody", {}, ...session.tracks.map((track, index) => h("tr", {},
        h("td", { class: "num" }, index + 1), h("td", {}, track.title || "track " + track.track),
        h("td", {}, track.artist || ""), h("td", { class: "num" }, fixed(track.time, 2)))))));
  }));
  if (!board.recent.length) $("recent").replaceChildren(h("p", { class: "hint" }, "no sessions in the log yet"));
}

async function reload() {
  try {
    const answer = await api("reload", {}, { admin: true });
    $("reload-result").textContent = `reloaded: ${answer.previous_version} → ${answer.data_version}`;
    showError("");
  } catch (error) { showError(error.message); }
}

// ---- start ------------------------------------------------------------------------------

async function start() {
  const fromUrl = hashParts().token;
  const stored = sessionStorage.getItem("botify-token");
  $("token").value = fromUrl || stored || "";
  $("token").addEventListener("change", () => sessionStorage.setItem("botify-token", token()));
  if (fromUrl) {  // kept for this tab, and out of the address bar
    sessionStorage.setItem("botify-token", fromUrl);
    history.replaceState(null, "", location.pathname + (hashParts().view ? "#" + hashParts().view : ""));
  }
  $("listen-search").addEventListener("submit", (event) => {
    event.preventDefault(); search($("listen-search"), $("listen-results"), "start here", startSession); });
  $("recommend-search").addEventListener("submit", (event) => {
    event.preventDefault(); search($("recommend-search"), $("recommend-results"), "send", answer); });
  document.querySelectorAll("[data-share]").forEach((button) =>
    button.addEventListener("click", () => play(Number(button.dataset.share), false)));
  $("share").addEventListener("input", () => { $("share-value").textContent = Number($("share").value).toFixed(2); });
  $("play-share").addEventListener("click", () => play(Number($("share").value), false));
  $("leave").addEventListener("click", () => play(Number($("share").value), true));
  $("new-listener").addEventListener("click", async () => {
    await ensureListener(true); state.current = null; state.session = []; renderListen(); });
  $("experiment").addEventListener("change", refreshWatch);
  $("reload").addEventListener("click", reload);
  window.addEventListener("hashchange", route);
  try {
    state.info = await api("info");
    const people = state.info.person_treatments.map((item) => item.experiment + " " + item.treatment);
    $("recommend-setup").textContent = people.length
      ? `Simulated listeners in ${people.join(", ")} wait here for you; send some with: botify sim run --agent studio --url ${location.origin}`
      : "No treatment of the running experiments is answered by a person: give one the recommender " +
        "{ kind = \"botify.studio:Person\", fallback = \"sticky_artist\" } (botify studio's default experiment does).";
    await ensureListener(false);
  } catch (error) { showError(error.message); }
  renderListen();
  route();
}

start();
