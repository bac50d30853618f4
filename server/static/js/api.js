// The JSON API as the dashboard reads it: a bearer token when the server needs one, errors as ApiError,
// and server-sent events followed over fetch (EventSource cannot send a token) with reconnection.

const TOKEN_KEY = "evolve.token";
let askForToken = null;

export class ApiError extends Error {
  constructor(status, detail, field) {
    super(detail);
    this.status = status;
    this.field = field || null;
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Register how to ask the person for a token: (reason) => Promise<string|null>. */
export function onTokenNeeded(fn) { askForToken = fn; }

function headers(extra = {}) {
  const out = {Accept: "application/json", ...extra};
  const t = token();
  if (t) out.Authorization = `Bearer ${t}`;
  return out;
}

async function failure(res) {
  let data = {};
  try { data = await res.json(); } catch { /* not JSON: keep the status text */ }
  return new ApiError(res.status, data.detail || `${res.status} ${res.statusText}`, data.field);
}

/** GET or POST a JSON endpoint; asks for the token once on a 401. */
export async function api(path, {method = "GET", body, signal} = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const init = {method, signal, headers: headers(body === undefined ? {} : {"Content-Type": "application/json"})};
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(path, init);
    if (res.status === 401 && attempt === 0 && askForToken) {
      const given = await askForToken("This server needs a token for this: EVOLVE_API_TOKEN, or one an admin made with "
        + "'evolve token create'.");
      if (given) { setToken(given); continue; }
    }
    if (!res.ok) throw await failure(res);
    return res.json();
  }
}

function parseEvent(block) {
  const ev = {event: "message", data: "", id: null};
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const key = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (key === "event") ev.event = value;
    else if (key === "data") ev.data += (ev.data ? "\n" : "") + value;
    else if (key === "id") ev.id = value;
  }
  return ev.data || ev.event !== "message" ? ev : null;
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * Follow a campaign's events after event id `after`: onEvent(kind, data) for each, onState("live" | "reconnecting" |
 * "ended"). Reconnects with backoff from the last id seen. Returns a function that stops following.
 */
export function followEvents(campaignId, after, {onEvent, onState = () => {}}) {
  const ctl = new AbortController();
  let last = after;
  let stopped = false;
  (async () => {
    let delay = 1000;
    while (!stopped) {
      try {
        const res = await fetch(`/campaigns/${encodeURIComponent(campaignId)}/events?after=${last}`,
          {headers: headers({Accept: "text/event-stream"}), signal: ctl.signal});
        if (!res.ok) throw await failure(res);
        onState("live");
        delay = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const ev = parseEvent(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
            if (!ev) continue;
            if (ev.id) last = Number(ev.id);
            if (ev.event === "end") { stopped = true; onState("ended"); return; }
            let data = {};
            try { data = ev.data ? JSON.parse(ev.data) : {}; } catch { continue; }
            onEvent(ev.event, data);
          }
        }
      } catch (err) {
        if (ctl.signal.aborted) return;
        if (err instanceof ApiError && err.status < 500 && err.status !== 401) { onState("ended"); return; }
      }
      if (stopped) return;
      onState("reconnecting");
      await sleep(delay);
      delay = Math.min(2 * delay, 15000);
    }
  })();
  return () => { stopped = true; ctl.abort(); };
}
