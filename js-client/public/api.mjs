// The demo's HTTP API (examples/demo/README.md). Signed-in calls carry the login token as
// `Authorization: Bearer`, the same token the page's consumer puts on /cable. Every POST sends a
// JSON body with `Content-Type: application/json` (the server refuses any other with 415).

/** Thrown for an answer that is not 2xx; `status` is the HTTP status (0: no answer at all). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

async function request(path, { method = "GET", json, token } = {}) {
  const headers = { Accept: "application/json" };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      signal: AbortSignal.timeout(10000),
    });
  } catch {
    throw new ApiError(0, "The server did not answer. Is it running?");
  }
  const text = await response.text();
  let body = text;
  if ((response.headers.get("content-type") || "").includes("json") && text !== "") {
    try { body = JSON.parse(text); } catch { /* keep the text */ }
  }
  if (!response.ok) {
    const message = body && typeof body === "object" && typeof body.error === "string"
      ? body.error
      : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

/** POST /login → { user, token, expires_in } (the response also sets the signed `user` cookie). */
export const login = (name) => request("/login", { method: "POST", json: { name } });

/** POST /token (Bearer) → { user, token, expires_in }: a fresh token in the same session. */
export const refreshToken = (token) => request("/token", { method: "POST", token });

/** POST /logout: ends the user's sessions (every token and cookie) and clears the cookie. */
export const logout = (token) => request("/logout", { method: "POST", json: {}, token });

/** GET /rooms → [{ room, messages, last_message_at }], most recent activity first. */
export const rooms = (token) => request("/rooms", { token });

/** GET /notifications → the signed-in user's notifications, newest first. */
export const notifications = (token) => request("/notifications", { token });

/** POST /notifications { user, message, kind } as the signed-in user → the stored notification (pushed to its owner over the cable). */
export const sendNotification = (token, notification) =>
  request("/notifications", { method: "POST", json: notification, token });
