// Errors: the inverse of the gateway's status table (gateway/errors.py), one class per status.

export class I2VError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfter: number | null = null,
  ) {
    super(message); // the gateway's sentence; `status` says which error
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

/** The error an answer carries (its JSON body's message, else its text). */
export async function errorOf(response: Response): Promise<I2VError> {
  const text = await response.text();
  let message = text || `HTTP ${response.status}`;
  try {
    const body = JSON.parse(text) as { message?: string };
    if (body && typeof body.message === "string" && body.message) message = body.message;
  } catch {
    // not JSON: the text is the message
  }
  const Kind = BY_STATUS[response.status] ?? I2VError;
  return new Kind(response.status, message, parseRetryAfter(response.headers.get("retry-after")));
}
