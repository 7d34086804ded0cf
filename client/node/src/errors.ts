// Errors: the inverse of the gateway's status table (gateway/errors.py), one class per status,
// and the failures without an answer (as openai-node's APIConnectionError and APITimeoutError).
// Every failure of a call is an I2VError; the network error is its `cause`.

export class I2VError extends Error {
  constructor(
    /** The HTTP status of the answer; null when there was none. */
    readonly status: number | null,
    message: string,
    readonly retryAfter: number | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options); // the gateway's sentence; `status` says which error
    this.name = new.target.name;
  }
}

export class BadRequest extends I2VError {}
export class Unauthorized extends I2VError {}
export class Forbidden extends I2VError {}
export class NotFound extends I2VError {}
export class Conflict extends I2VError {}
export class PayloadTooLarge extends I2VError {}
export class Unprocessable extends I2VError {}
export class RateLimited extends I2VError {}
export class InternalServerError extends I2VError {}
export class BadGateway extends I2VError {}
export class ServiceUnavailable extends I2VError {}
export class GatewayTimeout extends I2VError {}

/** The gateway could not be reached, or the connection broke before the answer (`cause`: why). */
export class APIConnectionError extends I2VError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(null, message, null, options);
  }
}

/** The call's `timeoutMs` passed (connecting, or waiting for the answer). */
export class APITimeoutError extends APIConnectionError {}

/** `wait` reached the caller's `timeoutMs` before the job ended (the job goes on). */
export class WaitTimeoutError extends APITimeoutError {
  constructor(readonly jobId: string, readonly jobStatus: string, timeoutMs?: number) {
    super(`job ${jobId} is still ${jobStatus}${timeoutMs === undefined ? "" : ` after ${timeoutMs} ms`} ` +
          "(it goes on; wait again or cancel it)");
  }
}

/** The caller's AbortSignal aborted the call. */
export class APIUserAbortError extends I2VError {
  constructor(options?: { cause?: unknown }) {
    super(null, "the call was aborted", null, options);
  }
}

/** The client cannot work as configured (a malformed URL, a scheme other than http(s), a token
 * with a line break): thrown at once, never retried. */
export class ConfigurationError extends I2VError {
  constructor(message: string) {
    super(null, message);
  }
}

const BY_STATUS: Record<number, typeof I2VError> = {
  400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
  422: Unprocessable, 429: RateLimited, 500: InternalServerError, 502: BadGateway, 503: ServiceUnavailable,
  504: GatewayTimeout,
};

/** Seconds from a Retry-After header: delay-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null): number | null {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, (at - Date.now()) / 1000);
}

/** The error an answer carries, from its status, headers and text (its JSON body's message). */
export function errorFrom(status: number, headers: Headers, text: string): I2VError {
  let message = text || `HTTP ${status}`;
  try {
    const body = JSON.parse(text) as { message?: string };
    if (body && typeof body.message === "string" && body.message) message = body.message;
  } catch {
    // not JSON: the text is the message
  }
  const Kind = BY_STATUS[status] ?? I2VError;
  return new Kind(status, message, parseRetryAfter(headers.get("retry-after")));
}

/** The error an answer carries (its JSON body's message, else its text). */
export async function errorOf(response: Response): Promise<I2VError> {
  return errorFrom(response.status, response.headers, await response.text());
}
