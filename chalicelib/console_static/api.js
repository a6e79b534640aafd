// The only way the console talks to PushaaS: its public HTTP APIs, with Basic auth.
// A failure becomes an ApiError carrying the API's own message ({"code", "message"}).

// The page is served at <api base>/console, so the APIs sit beside it (also under an
// API Gateway stage prefix such as /api/console).
const API_BASE = new URL('.', document.baseURI);

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function basic(username, password) {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  return 'Basic ' + btoa(String.fromCharCode(...bytes));
}

function messageOf(response, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.message === 'string' && body.message) return body.message;
  } catch {
    // Not JSON: the body itself (or the status line) is the message.
  }
  return text.trim() || `HTTP ${response.status} ${response.statusText}`.trim();
}

export class Api {
  constructor(session) {
    this.authorization = basic(session.username, session.password);
  }

  /** The raw answer {status, text}; throws only when the API cannot be reached. */
  async send(method, path, {json, form} = {}) {
    const headers = {Authorization: this.authorization, Accept: 'application/json'};
    let body;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = new URLSearchParams(form);
    }

    let response;
    try {
      response = await fetch(new URL(path, API_BASE), {
        method, headers, body, cache: 'no-store', credentials: 'omit',
      });
    } catch (error) {
      throw new ApiError(0, `Cannot reach the API: ${error.message}`);
    }
    const text = await response.text();
    return {status: response.status, ok: response.ok, text, message: messageOf(response, text)};
  }

  /** The parsed JSON body of a 2xx answer; an ApiError with the API's message otherwise. */
  async call(method, path, options) {
    const answer = await this.send(method, path, options);
    if (!answer.ok) throw new ApiError(answer.status, answer.message);
    return answer.text ? JSON.parse(answer.text) : null;
  }

  get(path) {
    return this.call('GET', path);
  }
}
