// The loopwright web UI: a chat with one agent session at a time, over the server's JSON API.
//
// Turns stream as Server-Sent Events read with fetch() (EventSource cannot send the bearer
// token); a dropped stream reconnects with Last-Event-ID. Everything the agent writes is put
// in the page as text (textContent), never as HTML; the assistant's messages are Markdown,
// built into elements by markdown.js (also never through HTML). Files are fetched with the
// token and shown or saved through blob: URLs.
"use strict";

const TOKEN_KEY = "loopwright.token";
const KEY_INPUTS = ["file_path", "path", "command", "pattern", "query", "url", "sql", "code",
  "description", "content"];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  authRequired: false,
  sessionId: null,
  runId: null,
  lastEventId: 0,
  finished: true,
  stream: null,        // AbortController of the open event stream
  bubble: null,        // the assistant message text streams into
  bubbleText: "",      // its Markdown so far
  bubbleFrame: 0,      // the animation frame that will draw it (0: none pending)
  cards: new Map(),    // tool_call id -> card elements
  sessionUsage: null,  // the session's usage before the running turn
  runUsage: null,
  filesTimer: null,
  images: new Map(),   // workspace path -> Promise of a blob: URL, for images in answers
  replayUntil: 0,      // events up to this number were replayed on opening a running turn
  waitingApprovals: new Set(),  // the approval requests unanswered when it was opened
  files: new Set(),    // the workspace's file paths, as last listed
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// --- the API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", "Bearer " + state.token);
  const init = { method: options.method || "GET", headers, signal: options.signal };
  if (options.json !== undefined) {
    headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    if (response.status === 401 && state.authRequired) {
      forgetToken();
      askToken("The token was refused: " + detail);
    }
    throw new ApiError(response.status, detail, response.headers.get("Retry-After"));
  }
  return response;
}

async function apiJson(path, options) {
  const response = await api(path, options);
  return response.json();
}

function sessionPath(suffix = "") {
  return "/api/sessions/" + encodeURIComponent(state.sessionId) + suffix;
}

function filePath(path) {
  return sessionPath("/files/" + path.split("/").map(encodeURIComponent).join("/"));
}

// --- authentication ---------------------------------------------------------------------

let tokenWaiters = [];

function forgetToken() {
  state.token = "";
  sessionStorage.removeItem(TOKEN_KEY);
}

function askToken(message) {
  $("token-error").textContent = message || "";
  const dialog = $("token-dialog");
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

async function submitToken(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  state.token = token;
  try {
    const me = await apiJson("/api/me");
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    $("token-dialog").close();
    showUser(me);
    const waiters = tokenWaiters;
    tokenWaiters = [];
    waiters.forEach((resolve) => resolve(me));
  } catch (error) {
    forgetToken();
    $("token-error").textContent = error.message;
  }
}

function showUser(me) {
  $("user").textContent = me.auth ? "signed in as " + me.user : "no authentication (local)";
  $("sign-out").hidden = !me.auth;
}

// --- sessions ---------------------------------------------------------------------------

async function loadSessions(selected) {
  const { sessions } = await apiJson("/api/sessions");
  const select = $("session-select");
  select.replaceChildren();
  if (!sessions.length) select.append(el("option", "", "(no sessions yet)"));
  for (const session of sessions) {
    const option = el("option", "", (session.title || "(untitled)") + " · " + session.id);
    option.value = session.id;
    select.append(option);
  }
  if (selected) select.value = selected;
  return sessions;
}

async function newSession() {
  const session = await apiJson("/api/sessions", { method: "POST" });
  await loadSessions(session.id);
  await openSession(session.id);
  return session;
}

// Delete the open session (after the user confirms), then open the latest one left. The
// server refuses while a turn runs in it: stop the turn first.
async function deleteSession() {
  const id = state.sessionId;
  if (!id || !confirm("Delete session " + id + ", its history and its files?")) return;
  await api(sessionPath(), { method: "DELETE" });
  closeStream();
  state.sessionId = null;
  const sessions = await loadSessions();
  if (sessions.length) {
    await openSession(sessions[0].id);
    return;
  }
  history.replaceState(null, "", location.pathname + location.search);
  clearLog();
  $("files").replaceChildren();
  $("files-empty").hidden = false;
  $("todos-panel").hidden = true;
  $("resume").hidden = true;
  $("delete-session").disabled = true;
  $("usage").textContent = "No usage yet.";
}

async function openSession(id) {
  closeStream();
  state.sessionId = id;
  $("delete-session").disabled = false;
  state.runId = null;
  state.finished = true;
  history.replaceState(null, "", "#" + encodeURIComponent(id));
  $("session-select").value = id;
  clearLog();
  // the session first: the history read next holds at least the steps its run had then
  const session = await apiJson(sessionPath());
  const history_ = await apiJson(sessionPath("/messages"));
  const run = session.running && session.run ? session.run : null;
  let messages = history_.messages;
  if (run) {
    // The running turn is drawn from its events, replayed from the first: the history
    // lacks the answer streaming now and the calls waiting for approval. So the history
    // goes up to the run's start, and its prompt (user messages only).
    let end = Math.min(run.first_message || 0, messages.length);
    while (end < messages.length && messages[end].role === "user") end += 1;
    messages = messages.slice(0, end);
  }
  renderHistory(messages);
  // the session's usage holds the run's so far, which its replayed usage events add again
  showSessionUsage(run ? usageBefore(session.usage, run.usage) : session.usage);
  refreshFiles();
  refreshTodos();
  showResume(session);
  if (run) {
    state.replayUntil = run.last_event_id;
    state.waitingApprovals = new Set((run.pending_approvals || []).map((r) => r.id));
    attach(run.id, 0);
  }
}

// The session's usage before a run: its usage now less the run's.
function usageBefore(session, run) {
  const before = { ...session };
  for (const [key, value] of Object.entries(run || {})) {
    if (typeof value === "number" && typeof before[key] === "number") before[key] -= value;
  }
  if (run && run.warehouse && before.warehouse) {
    const warehouse = { ...before.warehouse };
    for (const key of WAREHOUSE_COUNTS) warehouse[key] = (warehouse[key] || 0) - (run.warehouse[key] || 0);
    before.warehouse = warehouse.queries > 0 ? warehouse : null;
  }
  return before;
}

function clearLog() {
  $("log").replaceChildren();
  endBubble();
  forgetImages();
  state.files = new Set();
  state.cards.clear();
  state.replayUntil = 0;
  $("preview").hidden = true;
}

function renderHistory(messages) {
  const results = new Map();
  for (const message of messages) {
    for (const block of message.content) {
      if (block.type === "tool_result") results.set(block.tool_use_id, block);
    }
  }
  for (const message of messages) {
    for (const block of message.content) {
      if (block.type === "text" && block.text) {
        if (message.role === "user") addMessage("user", block.text);
        else addMessage("assistant", block.text);
      } else if (block.type === "tool_use") {
        const card = toolCard({ id: block.id, name: block.name, input: block.input });
        const result = results.get(block.id);
        if (result) {
          finishCard(card, {
            content: resultText(result.content),
            is_error: Boolean(result.is_error),
            duration_ms: null,
          });
        }
      }
    }
  }
  if (!messages.length) {
    const hint = el("p", "hint", "No messages yet in this session.");
    hint.id = "empty-hint"; // removed when the first message is sent
    $("log").append(hint);
  }
  scrollDown();
}

function resultText(content) {
  if (typeof content === "string") return content;
  return content.map((b) => (b.type === "text" ? b.text : "[" + b.type + "]")).join("\n");
}

// --- the conversation -------------------------------------------------------------------

function addMessage(role, text) {
  const node = el("div", "msg " + role);
  if (role === "assistant") {
    node.classList.add("md");
    Markdown.render(node, text, FILE_HOOKS);
  } else {
    node.textContent = text;
  }
  $("log").append(node);
  scrollDown();
  return node;
}

// Links and images in an answer that name workspace files ("charts/top10.png"): a link opens
// the file (preview for images, else download), an image is shown in place. Files are
// fetched through the API with the token; each image once per path until files change.
// The image types the server lists as images (server/files.py), shown in the preview.
const IMAGE_FILE = /\.(png|jpe?g|gif|webp|bmp|svg)$/i;

function fileButton(path) {
  const button = el("button", "file-link");
  button.type = "button";
  button.title = (IMAGE_FILE.test(path) ? "Preview " : "Download ") + path + " (workspace)";
  button.addEventListener("click", () => (IMAGE_FILE.test(path) ? preview(path) : download(path)));
  return button;
}

// Inline code that is exactly a workspace file's path (`humira_ca_top10.csv`) opens the file
// too, once the file list has that path (the list may arrive after the answer is drawn).
function linkFileCode(code) {
  if (!state.files.has(code.dataset.file) || code.parentElement?.classList.contains("file-link")) {
    return;
  }
  const button = fileButton(code.dataset.file);
  button.classList.add("file-code");
  if (code.parentNode) code.replaceWith(button);
  button.append(code);
  return button;
}

const FILE_HOOKS = {
  fileLink: fileButton,
  fileCode(path, text) {
    const code = el("code", null, text);
    code.dataset.file = path;
    return linkFileCode(code) || code;
  },
  fileImage(path, alt) {
    const figure = el("span", "md-figure");
    const img = el("img");
    img.alt = alt || path;
    img.title = path;
    figure.append(img);
    workspaceImage(path).then(
      (url) => {
        img.src = url;
        img.addEventListener("click", () => preview(path));
      },
      () => figure.replaceChildren(el("span", "md-missing", "[no image at " + path + "]")),
    );
    return figure;
  },
};

function workspaceImage(path) {
  if (!state.images.has(path)) {
    // a failure is kept too (no request per redrawn frame); files change only when a tool
    // runs, and each tool result starts the cache over
    const url = fetchBlob(path, false).then((blob) => URL.createObjectURL(blob));
    state.images.set(path, url);
  }
  return state.images.get(path);
}

// The workspace changed (a tool ran, another session opened): fetch images anew.
function forgetImages() {
  for (const url of state.images.values()) {
    url.then((href) => setTimeout(() => URL.revokeObjectURL(href), 60000), () => {});
  }
  state.images.clear();
}

// The assistant's text streams into one message, redrawn as Markdown at most once a frame.
function streamText(text) {
  if (!state.bubble) {
    state.bubble = addMessage("assistant", "");
    state.bubbleText = "";
  }
  state.bubbleText += text;
  if (!state.bubbleFrame) state.bubbleFrame = requestAnimationFrame(drawBubble);
}

function drawBubble() {
  if (state.bubbleFrame) cancelAnimationFrame(state.bubbleFrame);
  state.bubbleFrame = 0;
  if (!state.bubble) return;
  Markdown.render(state.bubble, state.bubbleText, FILE_HOOKS);
  scrollDown();
}

// The message is complete (a tool call or the end of the turn follows): draw it now.
function endBubble() {
  if (state.bubbleFrame) drawBubble();
  state.bubble = null;
  state.bubbleText = "";
}

function notice(kind, text) {
  const line = el("div", "notice " + kind, text);
  $("log").append(line);
  scrollDown();
  return line;
}

function scrollDown() {
  const log = $("log");
  log.scrollTop = log.scrollHeight;
}

function keyInput(input) {
  if (!input || typeof input !== "object") return "";
  for (const key of KEY_INPUTS) {
    if (typeof input[key] === "string") return input[key];
  }
  const first = Object.values(input).find((v) => typeof v === "string" || typeof v === "number");
  return first === undefined ? "" : String(first);
}

function oneLine(text, max) {
  const line = String(text).replace(/\s+/g, " ").trim();
  return line.length > max ? line.slice(0, max - 1) + "\u2026" : line;
}

function toolCard(call) {
  const root = el("div", "tool-card running");
  root.dataset.toolId = call.id;
  const head = el("div", "tool-head");
  const name = el("span", "tool-name", call.name);
  const input = el("span", "tool-input", oneLine(keyInput(call.input), 120));
  input.title = keyInput(call.input);
  const status = el("span", "tool-state", "running\u2026");
  head.append(name, input, status);
  const summary = el("div", "tool-summary");
  const details = el("details");
  details.append(el("summary", "", "input and output"));
  const inputPre = el("pre", "", JSON.stringify(call.input, null, 2));
  const outputPre = el("pre", "");
  outputPre.hidden = true;
  details.append(inputPre, outputPre);
  root.append(head, summary, details);
  $("log").append(root);
  const card = { root, status, summary, outputPre, approval: null, name: call.name };
  state.cards.set(call.id, card);
  scrollDown();
  return card;
}

function finishCard(card, result) {
  card.root.classList.remove("running", "waiting");
  card.root.classList.add(result.is_error ? "error" : "ok");
  const took = result.duration_ms === null || result.duration_ms === undefined
    ? "" : " \u00b7 " + formatDuration(result.duration_ms);
  const billed = result.warehouse ? " \u00b7 " + billText(result.warehouse) : "";
  card.status.textContent = (result.is_error ? "failed" : "done") + took + billed;
  card.summary.textContent = oneLine(result.content, 300);
  card.outputPre.textContent = result.content;
  card.outputPre.hidden = false;
  if (card.approval) {
    card.approval.remove();
    card.approval = null;
  }
}

function formatDuration(ms) {
  return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s";
}

// characters that change how the text around them shows (bidi overrides, zero-width ones)
// are shown as escapes, so what is approved reads as what runs
const HIDDEN_CHARS = /[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/g;

function approvalInput(input) {
  return Object.entries(input || {}).map(([name, raw]) => {
    if (typeof raw !== "string") return name + ": " + JSON.stringify(raw);
    const value = raw.replace(HIDDEN_CHARS,
      (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
    if (!value.includes("\n")) return name + ": " + value;
    return name + ":\n" + value.split("\n").map((line) => "  " + line).join("\n");
  }).join("\n");
}

function approvalBox(request) {
  const card = state.cards.get(request.tool_call_id) || toolCard({
    id: request.tool_call_id, name: request.name, input: request.input,
  });
  card.root.classList.add("waiting");
  card.status.textContent = "waiting for approval";
  const box = el("div", "approval");
  box.append(el("span", "", request.reason ? "Approve? " + request.reason : "Approve this call?"));
  // what will run, whole: a query's or a script's lines as lines (the card's input is
  // one JSON line with \n escapes, folded away)
  box.append(el("pre", "approval-input", approvalInput(request.input)));
  const reason = el("input");
  reason.placeholder = "reason (optional, sent to the agent if you deny)";
  const allow = el("button", "allow", "Allow");
  const deny = el("button", "deny danger", "Deny");
  allow.type = deny.type = "button";
  const answer = async (yes) => {
    allow.disabled = deny.disabled = true;
    try {
      await apiJson(sessionPath("/approvals/" + encodeURIComponent(request.id)), {
        method: "POST", json: { allow: yes, reason: reason.value },
      });
      card.status.textContent = yes ? "allowed, running\u2026" : "denied";
    } catch (error) {
      allow.disabled = deny.disabled = false;
      notice("error", "Could not answer the approval: " + error.message);
    }
  };
  allow.addEventListener("click", () => answer(true));
  deny.addEventListener("click", () => answer(false));
  box.append(reason, allow, deny);
  card.root.append(box);
  card.approval = box;
  scrollDown();
}

function handleEvent(event) {
  switch (event.type) {
    case "text_delta":
      streamText(event.text);
      break;
    case "tool_call":
      endBubble();
      if (!state.cards.has(event.id)) toolCard(event); // a resumed call is in the history
      setStatus("running " + event.name + "\u2026", true);
      break;
    case "approval_request":
      // replayed when the session was opened mid-run: asked only if still unanswered then
      if (state.lastEventId <= state.replayUntil && !state.waitingApprovals.has(event.id)) break;
      approvalBox(event);
      setStatus("waiting for your approval", true);
      break;
    case "tool_result": {
      const card = state.cards.get(event.id) || toolCard({ id: event.id, name: event.name, input: {} });
      finishCard(card, event);
      forgetImages();
      setStatus("thinking\u2026", true);
      if (event.name === "TodoWrite") refreshTodos();
      scheduleFilesRefresh();
      break;
    }
    case "usage":
      // a sub-agent's usage events carry its own run's figures: the turn's come with the
      // next usage event of the agent itself
      if (event.agent) break;
      state.runUsage = event.run;
      renderUsage();
      break;
    case "error":
      if (event.retrying) {
        setStatus("retrying: " + event.message, true);
        if (event.discard_partial && state.bubble) {
          state.bubbleText = "";
          drawBubble();
        }
      } else {
        notice("error", event.message);
      }
      break;
    case "notice":
      // something to know that does not stop the turn (the older turns could not be
      // summarised, a cost limit cannot hold); its code says which, for styling or filtering
      notice("info", (event.agent ? "[" + event.agent + "] " : "") + event.message).dataset.code =
        event.code;
      break;
    case "done":
      state.finished = true;
      endBubble();
      if (event.usage) {
        state.runUsage = event.usage; // the turn's whole usage, queries billed after its last model call too
        renderUsage();
      }
      for (const card of state.cards.values()) {
        if (card.root.classList.contains("running") || card.root.classList.contains("waiting")) {
          finishCard(card, { content: "stopped before it finished", is_error: true, duration_ms: null });
        }
      }
      if (event.stop_reason !== "end_turn") {
        notice("stopped", "Stopped: " + event.stop_reason + (event.detail ? " \u2014 " + event.detail : ""));
      }
      break;
    default:
      break;
  }
}

// --- streams ----------------------------------------------------------------------------

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let kind = "message";
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (data.length) onEvent({ type: kind, data: data.join("\n"), id });
        kind = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;  // keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") kind = text;
      else if (field === "data") data.push(text);
      else if (field === "id") id = text;
    }
  }
}

function closeStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  setRunning(false);
}

async function follow(response, runId, sessionId) {
  state.runId = runId;
  state.finished = false;
  setRunning(true);
  const controller = state.stream;
  let attempts = 0;
  for (;;) {
    try {
      await readEvents(response, (frame) => {
        if (frame.id !== null) state.lastEventId = Number(frame.id);
        handleEvent(JSON.parse(frame.data));
      });
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    if (state.finished || controller.signal.aborted || state.sessionId !== sessionId) break;
    // the connection dropped before the turn ended: pick the stream up where it stopped
    attempts += 1;
    if (attempts > 20) {
      notice("error", "Lost the connection to the server; reload the page to see the turn's result.");
      break;
    }
    setStatus("reconnecting\u2026", true);
    await new Promise((resolve) => setTimeout(resolve, Math.min(500 * attempts, 5000)));
    try {
      response = await api(sessionPath("/runs/" + encodeURIComponent(runId) + "/events"), {
        headers: { "Last-Event-ID": String(state.lastEventId) }, signal: controller.signal,
      });
      attempts = 0;
      setStatus("thinking\u2026", true);
    } catch (error) {
      if (controller.signal.aborted || error.status === 404) break;
    }
  }
  if (state.stream === controller) state.stream = null;
  setRunning(false);
  afterTurn();
}

async function attach(runId, after) {
  state.lastEventId = after;
  state.stream = new AbortController();
  const sessionId = state.sessionId;
  try {
    const response = await api(sessionPath("/runs/" + encodeURIComponent(runId) + "/events"), {
      headers: { "Last-Event-ID": String(after) }, signal: state.stream.signal,
    });
    await follow(response, runId, sessionId);
  } catch (error) {
    if (error.name !== "AbortError") notice("error", error.message);
    setRunning(false);
  }
}

async function send(event) {
  event.preventDefault();
  const prompt = $("prompt");
  const text = prompt.value;
  if (!text.trim() || !state.finished) return;
  await runTurn(async () => {
    if (!state.sessionId) await newSession();
    $("empty-hint")?.remove();
    addMessage("user", text);
    prompt.value = "";
    return "/messages";
  }, { content: text });
}

// Continue the session's interrupted turn (stopped, or cut short by the server's shutdown).
async function resumeTurn() {
  if (!state.sessionId || !state.finished) return;
  await runTurn(async () => "/resume");
}

// Start a turn (after `prepare`, which returns the session's path to post to) and follow
// its events to the end.
async function runTurn(prepare, body) {
  try {
    const path = await prepare();
    endBubble();
    state.sessionUsage = (await apiJson(sessionPath("/usage"))).usage;
    state.runUsage = null;
    state.lastEventId = 0;
    state.replayUntil = 0;
    state.stream = new AbortController();
    setRunning(true);
    const response = await api(sessionPath(path), {
      method: "POST", json: body, signal: state.stream.signal,
    });
    await follow(response, response.headers.get("X-Run-Id"), state.sessionId);
  } catch (error) {
    if (error.name === "AbortError") return;
    const wait = error.retryAfter ? " (try again in " + error.retryAfter + " s)" : "";
    notice("error", error.message + wait);
    setRunning(false);
  }
}

async function stop() {
  $("stop").disabled = true;
  try {
    await apiJson(sessionPath("/cancel"), { method: "POST" });
  } catch (error) {
    notice("error", error.message);
  } finally {
    $("stop").disabled = false;
  }
}

function afterTurn() {
  refreshFiles();
  refreshTodos();
  apiJson(sessionPath("/usage")).then((u) => showSessionUsage(u.usage)).catch(() => {});
  const id = state.sessionId;
  apiJson(sessionPath()).then((session) => {
    if (state.sessionId === id && state.finished) showResume(session);
  }).catch(() => {});
  loadSessions(state.sessionId).catch(() => {});
}

// The Continue button, when the session's last turn was interrupted and nothing runs now.
function showResume(session) {
  $("resume").hidden = !(session.resumable && !session.running);
}

function setRunning(running) {
  $("send").disabled = running;
  $("stop").hidden = !running;
  if (running) $("resume").hidden = true;
  setStatus(running ? "thinking\u2026" : "", running);
}

function setStatus(text, busy) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("busy", Boolean(busy));
}

// --- usage ------------------------------------------------------------------------------

function showSessionUsage(usage) {
  state.sessionUsage = usage;
  state.runUsage = null;
  renderUsage();
}

function renderUsage() {
  const base = state.sessionUsage || {};
  const run = state.runUsage || {};
  const sum = (key) => (base[key] || 0) + (run[key] || 0);
  const tokens = sum("input_tokens") + sum("output_tokens") + sum("cache_read_tokens") + sum("cache_write_tokens");
  const parts = [
    tokens.toLocaleString() + " tokens (in " + sum("input_tokens").toLocaleString() +
      " \u00b7 out " + sum("output_tokens").toLocaleString() + ")",
    "$" + sum("cost_usd").toFixed(4),
  ];
  // what a warehouse billed for the queries (BigQuery), next to the model's cost: nothing
  // on databases that bill nothing per query (DuckDB, PostgreSQL)
  const warehouse = addWarehouse(base.warehouse, run.warehouse);
  if (warehouse) parts.push(warehouseText(warehouse));
  parts.push(sum("model_calls") + " model calls", sum("tool_calls") + " tool calls");
  $("usage").textContent = "Session: " + parts.join(" \u00b7 ");
}

// --- warehouse bills (BigQuery) ----------------------------------------------------------

const WAREHOUSE_COUNTS = ["queries", "cache_hits", "bytes_billed", "bytes_processed", "cost_usd"];

// The sum of two usages' warehouse figures (either may be absent); null when none billed.
function addWarehouse(a, b) {
  if (!(a && a.queries > 0)) return b && b.queries > 0 ? b : null;
  if (!(b && b.queries > 0)) return a;
  const total = { ...a };
  for (const key of WAREHOUSE_COUNTS) {
    total[key] = typeof a[key] === "number" && typeof b[key] === "number" ? a[key] + b[key] : null;
  }
  return total;
}

// Bytes as BigQuery's console shows them (binary units): "10 MB", "1.25 GB".
function formatBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let size = n;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  if (unit === 0) return n.toLocaleString("en-US") + " B";
  return String(Number(size.toFixed(2))) + " " + units[unit];
}

function formatUsd(usd) {
  if (typeof usd !== "number") return null;
  return usd > 0 && usd < 0.00005 ? "<$0.0001" : "$" + usd.toFixed(4);
}

// "BigQuery 30 MB billed (2 queries) ≈ $0.0002", as the CLI says it (the estimate left out
// when the server's price per TiB is not usable)
function warehouseText(warehouse) {
  const cost = formatUsd(warehouse.cost_usd);
  const cached = warehouse.cache_hits ? ", " + warehouse.cache_hits + " cached" : "";
  const queries = warehouse.queries + (warehouse.queries === 1 ? " query" : " queries") + cached;
  return (warehouse.database || "BigQuery") + " " + formatBytes(warehouse.bytes_billed || 0) +
    " billed (" + queries + ")" + (cost ? " \u2248 " + cost : "");
}

// One query's bill, on its tool card: "10 MB billed" or "0 B billed (cached)".
function billText(bill) {
  return formatBytes(bill.bytes_billed || 0) + " billed" + (bill.cache_hit ? " (cached)" : "");
}

// --- files and todos --------------------------------------------------------------------

function scheduleFilesRefresh() {
  clearTimeout(state.filesTimer);
  state.filesTimer = setTimeout(refreshFiles, 300);
}

async function refreshFiles() {
  const session = state.sessionId;
  if (!session) return;
  let listing;
  try {
    listing = await apiJson(sessionPath("/files"));
  } catch (error) {
    return;
  }
  if (session !== state.sessionId) return; // another session was opened meanwhile
  const list = $("files");
  list.replaceChildren();
  for (const file of listing.files) {
    const item = el("li");
    const name = el("button", "file-name", file.path);
    name.type = "button";
    name.title = file.image ? "Preview " + file.path : "Download " + file.path;
    name.addEventListener("click", () => (file.image ? preview(file.path) : download(file.path)));
    const size = el("span", "file-size", formatSize(file.size));
    const save = el("button", "icon download", "\u2b07");
    save.type = "button";
    save.title = "Download " + file.path;
    save.setAttribute("aria-label", "Download " + file.path);
    save.addEventListener("click", () => download(file.path));
    item.append(name, size, save);
    list.append(item);
  }
  $("files-empty").hidden = listing.files.length > 0;
  state.files = new Set(listing.files.map((file) => file.path));
  for (const code of $("log").querySelectorAll("code[data-file]")) linkFileCode(code);
}

function formatSize(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KB";
  return (bytes / 1024 / 1024).toFixed(1) + " MB";
}

async function fetchBlob(path, asAttachment) {
  const response = await api(filePath(path) + (asAttachment ? "?download=true" : ""));
  return response.blob();
}

async function preview(path) {
  try {
    const blob = await fetchBlob(path, false);
    const img = $("preview-img");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.alt = path;
    $("preview-caption").textContent = path;
    $("preview").hidden = false;
  } catch (error) {
    notice("error", "Could not show " + path + ": " + error.message);
  }
}

async function download(path) {
  try {
    const blob = await fetchBlob(path, true);
    const url = URL.createObjectURL(blob);
    const link = el("a");
    link.href = url;
    link.download = path.split("/").pop();
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) {
    notice("error", "Could not download " + path + ": " + error.message);
  }
}

async function refreshTodos() {
  if (!state.sessionId) return;
  let result;
  try {
    result = await apiJson(sessionPath("/todos"));
  } catch (error) {
    return;
  }
  const list = $("todos");
  list.replaceChildren();
  for (const todo of result.todos) {
    const text = todo.status === "in_progress" && todo.activeForm ? todo.activeForm : todo.content;
    list.append(el("li", todo.status, text));
  }
  $("todos-panel").hidden = result.todos.length === 0;
}

// --- start ------------------------------------------------------------------------------

// The session id in the address ("#abc123"); "" when there is none or it is mangled (a
// link cut short mid-escape), so the page still starts, with the latest session.
function sessionInHash() {
  try {
    return decodeURIComponent(location.hash.slice(1));
  } catch (_) {
    return "";
  }
}

async function start() {
  $("composer").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", stop);
  $("resume").addEventListener("click", resumeTurn);
  $("new-session").addEventListener("click", () => newSession().catch((e) => notice("error", e.message)));
  $("delete-session").addEventListener("click", () =>
    deleteSession().catch((e) => notice("error", "Not deleted: " + e.message)),
  );
  $("session-select").addEventListener("change", (event) => {
    if (event.target.value) openSession(event.target.value).catch((e) => notice("error", e.message));
  });
  $("refresh-files").addEventListener("click", refreshFiles);
  $("token-form").addEventListener("submit", submitToken);
  $("token-dialog").addEventListener("cancel", (event) => event.preventDefault());
  $("sign-out").addEventListener("click", () => {
    forgetToken();
    location.reload();
  });

  const info = await (await fetch("/api/info")).json();
  state.authRequired = info.auth_required;
  let me;
  if (state.authRequired && !state.token) {
    me = await askToken();
  } else {
    try {
      me = await apiJson("/api/me");
    } catch (error) {
      if (error.status !== 401) throw error;
      me = await new Promise((resolve) => tokenWaiters.push(resolve));
    }
  }
  showUser(me);
  const sessions = await loadSessions();
  const wanted = sessionInHash();
  const chosen = sessions.find((s) => s.id === wanted) || sessions[0];
  if (chosen) await openSession(chosen.id);
}

start().catch((error) => notice("error", "The page could not start: " + error.message));
