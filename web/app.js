// The web chat client: plain JS, no build step. It talks to the API of the same origin (see /docs).
// Replies stream in through fetch + ReadableStream (EventSource cannot send the Authorization header);
// where streaming is not available it falls back to the single-message long-poll.
"use strict";

const $ = (id) => document.getElementById(id);
// view: the AbortController of the open chat; opening another chat, deleting it or logging out aborts it, which
// stops what was started for it (its GET, the replies it follows), so nothing of one chat lands in another.
const state = { token: localStorage.getItem("gb_token"), rooms: [], room: null, view: null, mobile: "" };

// ---- API -----------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body, extraHeaders, signal) {
  const headers = Object.assign({}, extraHeaders);
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "The server cannot be reached. Check your connection and try again.");
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    /* not JSON: handled below */
  }
  if (signal) signal.throwIfAborted();
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(res.status, err.code || "http_" + res.status,
      err.message || "The server answered " + res.status + ".", res.headers.get("Retry-After"));
    if (res.status === 401 && path !== "/auth/verify-otp") {
      // The token expired or was revoked: back to the sign-in form, saying why (showError leaves this notice).
      e.sessionEnded = true;
      logout(false);
      notify("Your session has ended. Sign in again.", "info");
    }
    throw e;
  }
  return data;
}

// ---- notices -------------------------------------------------------------------------------------------------

function notify(text, kind) {
  const n = $("notice");
  n.textContent = text;
  n.className = "notice" + (kind === "info" ? " info" : "");
  n.hidden = !text;
}

// Shows what went wrong; an AbortError is no error (the user left the chat it was for). A 401 has already shown the
// sign-in form and said why (api).
function showError(e) {
  if (e.name !== "AbortError" && !e.sessionEnded) notify(explain(e));
}

function explain(e) {
  if (!(e instanceof ApiError)) return String(e);
  let text = e.message;
  if (e.retryAfter && (e.status === 429 || e.status === 503)) {
    const s = parseInt(e.retryAfter, 10);
    if (s > 0) text += " Try again in " + (s >= 3600 ? Math.ceil(s / 3600) + " h." : s >= 60 ? Math.ceil(s / 60) + " min." : s + " s.");
  }
  return text;
}

async function guarded(button, fn) {
  if (button) button.disabled = true;
  try {
    notify("");
    await fn();
  } catch (e) {
    showError(e);
  } finally {
    if (button) button.disabled = false;
  }
}

// ---- sign-in -------------------------------------------------------------------------------------------------

function showLogin() {
  $("app").hidden = true;
  $("account").hidden = true;
  $("login").hidden = false;
  $("mobile-form").hidden = false;
  $("otp-form").hidden = true;
}

async function sendCode(mobile, name) {
  try {
    return await api("POST", "/auth/send-otp", { mobile });
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  // Unknown number: create the account, then send the code.
  const signup = { mobile };
  if (name) signup.name = name;
  await api("POST", "/auth/signup", signup);
  return api("POST", "/auth/send-otp", { mobile });
}

$("mobile-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  guarded(ev.submitter, async () => {
    state.mobile = $("mobile").value.trim();
    const sent = await sendCode(state.mobile, $("name").value.trim());
    state.mobile = sent.mobile;
    $("mobile-form").hidden = true;
    $("otp-form").hidden = false;
    $("otp-hint").textContent = "We sent a code to " + sent.mobile + ". It is valid for " +
      Math.round(sent.expires_in / 60) + " minutes.";
    if (sent.otp) {
      // SMS is mocked on this server: the code comes back in the response.
      $("otp").value = sent.otp;
      $("otp-hint").textContent += " (Test server: the code is filled in for you.)";
    }
    $("otp").focus();
  });
});

$("otp-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  guarded(ev.submitter, async () => {
    const tok = await api("POST", "/auth/verify-otp", { mobile: state.mobile, otp: $("otp").value.trim() });
    state.token = tok.access_token;
    localStorage.setItem("gb_token", state.token);
    $("otp").value = "";
    await showApp();
  });
});

$("otp-back").addEventListener("click", showLogin);

function logout(callServer) {
  const token = state.token;
  state.token = null;
  leaveRoom();
  localStorage.removeItem("gb_token");
  if (callServer && token) {
    fetch("/auth/logout", { method: "POST", headers: { Authorization: "Bearer " + token } }).catch(() => {});
  }
  showLogin();
}

$("logout").addEventListener("click", () => logout(true));

// ---- account bar ---------------------------------------------------------------------------------------------

async function refreshAccount() {
  const [usage, sub] = await Promise.all([api("GET", "/chatroom/usage"), api("GET", "/subscription/status")]);
  $("tier").textContent = sub.tier;
  $("usage").textContent = usage.limit === null ? "Unlimited messages"
    : usage.remaining + " of " + usage.limit + " messages left today";
  $("upgrade").hidden = sub.tier === "pro";
}

$("upgrade").addEventListener("click", (ev) => {
  guarded(ev.currentTarget, async () => {
    const s = await api("POST", "/subscribe/pro");
    window.location.assign(s.checkout_url);
  });
});

// ---- chatrooms -----------------------------------------------------------------------------------------------

async function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("account").hidden = false;
  await Promise.all([loadRooms(), refreshAccount()]);
}

// The first page of the list (the cached one); "More chats" follows next_before for older ones.
async function loadRooms(before) {
  const data = await api("GET", before ? "/chatroom?before=" + encodeURIComponent(before) : "/chatroom");
  state.rooms = before ? state.rooms.concat(data.chatrooms) : data.chatrooms;
  const ul = $("room-list");
  ul.replaceChildren();
  for (const r of state.rooms) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.id = r.id;
    b.textContent = r.title;
    const small = document.createElement("small");
    small.textContent = r.message_count + " messages";
    b.append(small);
    b.addEventListener("click", () => guarded(null, () => openRoom(r.id)));
    li.append(b);
    ul.append(li);
  }
  if (data.next_before) {
    const li = document.createElement("li");
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.textContent = "More chats";
    more.addEventListener("click", () => guarded(more, () => loadRooms(data.next_before)));
    li.append(more);
    ul.append(li);
  }
  markOpenRoom();
}

function markOpenRoom() {
  for (const b of $("room-list").querySelectorAll("button[data-id]")) {
    if (state.room && b.dataset.id === String(state.room.id)) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
}

$("room-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  guarded(ev.submitter, async () => {
    const title = $("room-title").value.trim();
    const room = await api("POST", "/chatroom", title ? { title } : {});
    $("room-title").value = "";
    await loadRooms();
    await openRoom(room.id);
  });
});

$("room-delete").addEventListener("click", (ev) => {
  if (!state.room || !window.confirm("Delete this chat and all its messages?")) return;
  guarded(ev.currentTarget, async () => {
    await api("DELETE", "/chatroom/" + state.room.id);
    leaveRoom();
    showNoChat();
    await loadRooms();
  });
});

function leaveRoom() {
  if (state.view) state.view.abort();
  state.view = null;
  state.room = null;
}

function showNoChat() {
  $("chat-view").hidden = true;
  $("chat-empty").hidden = false;
}

// While the GET is on its way no chat is open (state.room is null): Send does nothing.
async function openRoom(id) {
  leaveRoom();
  const view = (state.view = new AbortController());
  let room;
  try {
    room = await api("GET", "/chatroom/" + id, undefined, undefined, view.signal);
  } catch (e) {
    if (view === state.view) showNoChat(); // not the chat shown before, which is closed
    throw e;
  }
  state.room = room;
  $("chat-empty").hidden = true;
  $("chat-view").hidden = false;
  $("chat-title").textContent = room.title;
  $("messages").replaceChildren();
  $("status").textContent = "";
  for (const m of room.messages) {
    const li = renderMessage(m);
    if (m.status === "pending") followReply(room.id, m, li, view.signal).catch(showError);
  }
  markOpenRoom();
  $("message").focus();
}

// Draws a message: into li if given (an update; li may have left the page with its chat), else as a new bubble at
// the end of the open chat.
function renderMessage(m, li) {
  const added = !li;
  li = li || document.createElement("li");
  li.className = m.role + " " + m.status;
  li.dataset.id = m.id;
  li.textContent = m.status === "failed" ? "The reply failed: " + (m.error || "unknown error") : m.content;
  if (m.status === "pending") li.setAttribute("aria-busy", "true");
  else li.removeAttribute("aria-busy");
  if (added) {
    $("messages").append(li);
    li.scrollIntoView({ block: "end" });
  }
  return li;
}

// The Idempotency-Key of the message being sent. Sending the same text to the same chat again (after an error,
// e.g. a lost answer) reuses it, so the server answers with the first 202 instead of storing the message twice;
// it is dropped once the message is stored.
let sending = null;

$("message-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const room = state.room;
  const content = $("message").value.trim();
  if (!room || !content) return;
  if (!sending || sending.room !== room.id || sending.content !== content) {
    const key = (crypto.randomUUID && crypto.randomUUID()) || String(Date.now()) + Math.random();
    sending = { room: room.id, content, key };
  }
  const { key } = sending;
  const view = state.view;
  // Send is busy until the message is stored (202); the reply is followed in the background, so another message
  // can be sent meanwhile, here or in another chat.
  guarded(ev.submitter, async () => {
    const posted = await api("POST", "/chatroom/" + room.id + "/message", { content }, { "Idempotency-Key": key });
    sending = null;
    if ($("message").value.trim() === content) $("message").value = "";
    refreshAccount().catch(() => {});
    if (view !== state.view) return; // the user left the chat: it shows both when opened again
    renderMessage(posted.message);
    const li = renderMessage(posted.reply);
    followReply(room.id, posted.reply, li, view.signal).then(() => loadRooms().catch(() => {}), showError);
  });
});

// Enter sends, through the Send button: while it is disabled (a message on its way) a second Enter does nothing,
// as a second click would not. Enter that ends an IME composition (Japanese, Chinese, ...) only ends it.
$("message").addEventListener("keydown", (ev) => {
  if (ev.isComposing || ev.keyCode === 229) return;
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    const send = $("send");
    if (!send.disabled) $("message-form").requestSubmit(send);
  }
});

// ---- replies: stream, else long-poll -------------------------------------------------------------------------

// Follows a pending reply into li until it is done, then announces it (#status); rejects with an AbortError
// when signal (the chat's view) is aborted, with an ApiError when the server cannot tell.
async function followReply(roomId, reply, li, signal) {
  const base = "/chatroom/" + roomId + "/messages/" + reply.id;
  let m = null;
  try {
    if (window.ReadableStream) m = await streamReply(base, li, signal);
  } catch (e) {
    if (signal.aborted) throw e;
    /* fall back to long-poll */
  }
  for (let i = 0; !m && i < 20; i++) {
    const got = await api("GET", base + "?wait=30", undefined, undefined, signal);
    renderMessage(got, li);
    if (got.status !== "pending") m = got;
  }
  if (m) $("status").textContent = m.status === "failed" ? "The reply failed." : "Reply: " + m.content;
}

// Read the SSE stream; resolves with the message once a done/error event was shown, null if the stream was not
// available.
async function streamReply(base, li, signal) {
  let lastId = null;
  let text = "";
  for (let attempt = 0; attempt < 10; attempt++) {
    const headers = { Authorization: "Bearer " + state.token, Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    const res = await fetch(base + "/stream", { headers, signal });
    if (!res.ok || !res.body) return null;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const ev = parseEvent(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
        if (ev.id) lastId = ev.id;
        if (ev.event === "delta") {
          text += JSON.parse(ev.data).text;
          li.textContent = text;
          li.scrollIntoView({ block: "end" });
        } else if (ev.event === "restart" || ev.event === "reset") {
          text = ""; // the reply is being generated again: drop what we have
          li.textContent = "";
        } else if (ev.event === "done" || ev.event === "error") {
          const m = JSON.parse(ev.data);
          renderMessage(m, li);
          return m;
        }
      }
    }
    // The server ends a stream after 120 s: reconnect and continue after the last event.
  }
  return null;
}

function parseEvent(block) {
  const ev = { event: "message", data: "", id: null };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line[0] === ":") continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") ev.event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") ev.id = value;
  }
  ev.data = data.join("\n");
  return ev;
}

// ---- start ---------------------------------------------------------------------------------------------------

(async () => {
  if (!state.token) return showLogin();
  try {
    await showApp();
  } catch (e) {
    if (state.token) notify(explain(e));
  }
})();
