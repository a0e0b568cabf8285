// The admin API, called with the token kept in sessionStorage (this tab only) as a bearer
// header: never in a URL. Errors carry the API's own message and the parameter it names.

const KEY = "gateway-admin-token";
let pending = 0;

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

function busy(change) {
  pending += change;
  document.getElementById("progress").hidden = pending === 0;
  document.getElementById("main").setAttribute("aria-busy", String(pending > 0));
}

// `body`: an object (sent as JSON) or a string (sent as it is). `html`: the answer is text.
export async function api(path, { method = "GET", body, html = false } = {}) {
  busy(1);
  try {
    const headers = { authorization: `Bearer ${token.get() || ""}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined || typeof body === "string" ? body : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      let param = null;
      try {
        const error = (await response.json()).error;
        message = error.message;
        param = error.param;
      } catch {
        // not the API's JSON error: keep the status line
      }
      if (response.status === 401) {
        window.dispatchEvent(new CustomEvent("gateway:unauthorized", { detail: message }));
      }
      throw new ApiError(response.status, message, param);
    }
    return html ? response.text() : response.json();
  } finally {
    busy(-1);
  }
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
