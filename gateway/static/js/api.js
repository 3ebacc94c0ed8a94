// The token (URL fragment or this tab's storage) and requests to the gateway's REST API (gateway.api): GET, and
// POST for the one change it takes over HTTP (adopting an allocation); to the gateway the socket is on.

const TOKEN_KEY = "watchfloor.token";
/** Where API calls go: "" (the page's own gateway) or the base URL of the gateway the live socket is on. */
let apiBase = "";

/**
 * Send API calls to the gateway at ``base`` (the one the socket moved to: the page's own may be lost). A peer answers
 * a page of another gateway's origin with CORS headers (WF_GATEWAY_PEERS); the page's own origin needs none.
 */
export function setApiBase(base) {
  apiBase = base === location.origin ? "" : base;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** The token itself is refused (401) or may not do this (403): retrying with it cannot help. */
  get refused() {
    return this.status === 401 || this.status === 403;
  }
}

/** The token from the URL fragment (#token=..., then removed from the address bar) or this tab's storage. */
export function takeToken() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromUrl = params.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl.trim());
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export const hasTokenInFragment = () => Boolean(new URLSearchParams(location.hash.replace(/^#/, "")).get("token"));

export function keepToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The JSON body of GET ``path`` with the bearer token; ApiError with the gateway's code and message otherwise. */
export async function getJson(token, path) {
  return requestJson(token, path, "GET");
}

/** The JSON body of POST ``path`` (no body: its parameters are in the query, as GET's) with the bearer token. */
export async function postJson(token, path) {
  return requestJson(token, path, "POST");
}

async function requestJson(token, path, method) {
  const res = await fetch(apiBase + path, { method, headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  let body = null;
  try {
    body = await res.json();
  } catch (_) {
    body = null;
  }
  if (!res.ok) {
    throw new ApiError(res.status, (body && body.error) || `http_${res.status}`, (body && body.message) || res.statusText);
  }
  return body;
}
