// Talking to the server: the session cookie (HttpOnly: this script never sees it) goes
// with every request; changes carry the CSRF token the sign-in answered. Errors become
// ApiError with the server's message.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Who is signed in: {key_id, key_name, account, tenant, role, scopes, csrf_token}, or null. */
export const session = { current: null };

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Whether the signed-in key has `scope` ("read", "infer", "write", "manage", "admin"). */
export function can(scope) {
  return Boolean(session.current && session.current.scopes.includes(scope));
}

function headersFor(method, extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (UNSAFE.has(method) && session.current) headers["X-CSRF-Token"] = session.current.csrf_token;
  return headers;
}

/** The message of an error answer: {"error": "..."} or OpenAI's {"error": {"message"}}. */
export function messageOf(status, body) {
  const error = body && body.error;
  if (typeof error === "string") return error;
  if (error && typeof error.message === "string") return error.message;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return `the server answered ${status}`;
}

export const signedOut = new EventTarget();

/**
 * api("GET", "/api/v1/models") → parsed JSON (null for 204).
 * Options: json (a body sent as JSON), body (sent as is), headers, signal, raw (the Response).
 */
export async function api(method, path, { json, body, headers = {}, signal, raw = false } = {}) {
  const init = { method, headers: headersFor(method, headers), credentials: "same-origin", signal };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  if (raw && response.ok) return response;
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && session.current && !path.startsWith("/ui/")) {
      session.current = null;
      signedOut.dispatchEvent(new Event("signedout"));
    }
    throw new ApiError(response.status, messageOf(response.status, parsed), parsed);
  }
  return parsed;
}

/**
 * Send a file with progress: upload("POST", path, formData, fraction => ...) → parsed JSON.
 * fetch() reports no upload progress, so this one uses XMLHttpRequest.
 */
export function upload(method, path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.withCredentials = true;
    for (const [name, value] of Object.entries(headersFor(method))) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let parsed = null;
      try {
        parsed = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        parsed = xhr.responseText;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        if (onProgress) onProgress(1);
        resolve(parsed);
      } else {
        reject(new ApiError(xhr.status, messageOf(xhr.status, parsed), parsed));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload failed: no answer")));
    xhr.send(formData);
  });
}

/**
 * Read a server-sent-event stream (OpenAI's streaming answers): calls onData with each
 * `data:` payload parsed as JSON, until `[DONE]` or the end. Returns when the stream ends.
 */
export async function streamEvents(path, json, onData, signal) {
  const response = await api("POST", path, { json, signal, raw: true, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
    }
  }
}

export async function signIn(apiKey) {
  session.current = await api("POST", "/ui/sign-in", { json: { api_key: apiKey } });
  return session.current;
}

export async function restore() {
  try {
    session.current = await api("GET", "/ui/session");
  } catch (err) {
    if (err.status !== 401) throw err;
    session.current = null;
  }
  return session.current;
}

export async function signOut() {
  try {
    await api("DELETE", "/ui/session");
  } finally {
    session.current = null;
  }
}

/** The path of a resource, its names escaped: path`/api/v1/models/${name}`. */
export function path(strings, ...names) {
  return strings.reduce((out, s, i) => out + s + (i < names.length ? encodeURIComponent(names[i]) : ""), "");
}
