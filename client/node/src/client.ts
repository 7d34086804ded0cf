// A small client over global fetch (Node 20+): the same operations, errors and fault handling as
// the Python SDK. Every failure is an I2VError; waits ride out gateway restarts.
import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import {
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  ConfigurationError,
  I2VError,
  PayloadTooLarge,
  WaitTimeoutError,
  errorFrom,
  parseRetryAfter,
} from "./errors.js";
import type { components } from "./openapi.js";

type Schemas = components["schemas"];
export type GenerateRequest = Schemas["GenerateRequest"];
export type GenerateResponse = Schemas["GenerateResponse"];
export type JobRequest = Schemas["JobRequest"];
export type JobResponse = Schemas["JobResponse"];
export type JobListResponse = Schemas["JobListResponse"];
export type BatchResponse = Schemas["BatchResponse"];
export type JobStatus = JobResponse["status"];

/** A file path, or the encoded image's bytes. */
export type ImageInput = string | Uint8Array;
/** A request with `image` (path or bytes) in place of `image_base64`, and the defaults left out. */
export type VideoRequest = Partial<Omit<JobRequest, "image_base64" | "prompt">> & {
  prompt: string;
  image?: ImageInput;
  image_base64?: string;
};

export interface Progress {
  jobId: string;
  status: string;
  step?: number;
  total?: number;
  message?: string;
}

export interface RetryOptions {
  /** Retries of 429, 502, 503 and 504 answers (and network errors) of idempotent calls. */
  maxRetries?: number;
  backoffMs?: number;
  /** A Retry-After longer than this is not waited for: the error is thrown at once. */
  maxWaitMs?: number;
}

/** Per call: each method takes these as its last argument (or in its options object). */
export interface RequestOptions {
  /** Milliseconds for each attempt, from sending to the whole answer; default: the client's. */
  timeoutMs?: number;
  /** Retries of this call; default: the client's. */
  maxRetries?: number;
  /** Aborts the call (APIUserAbortError). */
  signal?: AbortSignal;
}

export interface ClientOptions {
  /** Defaults to I2V_API_URL, else http://127.0.0.1:8000. */
  baseUrl?: string;
  /** An API key or a JWT; defaults to I2V_API_TOKEN. */
  token?: string;
  /** When the gateway requires signed requests (SECURITY.md); defaults to I2V_REQUEST_SIGNING_SECRET. */
  signingSecret?: string;
  retry?: RetryOptions;
  /** Retries of each call (overrides retry.maxRetries); default 3. */
  maxRetries?: number;
  /** Milliseconds for each attempt of a call; default 900 000 (a synchronous generation). */
  timeoutMs?: number;
  /** The gateway's body limit (I2V_MAX_BODY_BYTES): a larger body is refused before it is sent.
   * Defaults to I2V_MAX_BODY_BYTES, else learnt from the gateway's first 413. */
  maxBodyBytes?: number;
  /** Merged into every fetch call, e.g. `{ dispatcher }` from the undici package. */
  fetchOptions?: Record<string, unknown>;
}

export interface WaitOptions {
  onProgress?: (progress: Progress) => void;
  /** The whole wait; past it WaitTimeoutError (the job goes on). Default: no limit. */
  timeoutMs?: number;
  pollIntervalMs?: number;
  signal?: AbortSignal;
}

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
// Answers that mean nothing was done: retried for idempotent calls, and a 429 for any call.
const RETRY_STATUSES = new Set([429, 502, 503, 504]);
const ANY_CALL_RETRY_STATUSES = new Set([429]);
// Answers a wait rides out: a restart, a proxy, a busy gateway.
const TRANSIENT_STATUSES = new Set([429, 500, 502, 503, 504]);
// The request never left: safe to send again, whatever the call.
const NOT_SENT_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH",
                                "UND_ERR_CONNECT_TIMEOUT"]);
export const DEFAULT_TIMEOUT_MS = 900_000; // the gateway's inference deadline is 600 s by default
const STREAM_IDLE_MS = 60_000; // the gateway sends a heartbeat every 5 s
const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 5_000;
const UNDICI_DISPATCHER = Symbol.for("undici.globalDispatcher.1");
const TOO_LARGE = /larger than (\d+) bytes/;

const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve, reject) => {
  if (signal?.aborted) return reject(new APIUserAbortError({ cause: signal.reason }));
  const timer = setTimeout(() => {
    signal?.removeEventListener("abort", onAbort);
    resolve();
  }, ms);
  const onAbort = () => {
    clearTimeout(timer);
    reject(new APIUserAbortError({ cause: signal?.reason }));
  };
  signal?.addEventListener("abort", onAbort, { once: true });
});

/** An undici Agent without undici's own 300 s headers and body timeouts (a synchronous generation
 * may take longer; this client's timeoutMs bounds each call instead). Node 20 bundles undici
 * without exporting it: its global Agent's class makes one. Undefined where that is not found
 * (then pass `fetchOptions: { dispatcher }` from the undici package for calls over 300 s). */
let patientDispatcher: Promise<unknown> | undefined;
function longCallDispatcher(): Promise<unknown> {
  patientDispatcher ??= (async () => {
    const holder = globalThis as unknown as Record<symbol, { constructor: new (options: object) => unknown }>;
    if (!holder[UNDICI_DISPATCHER]) await fetch("data:,").catch(() => undefined); // loads undici
    const Agent = holder[UNDICI_DISPATCHER]?.constructor;
    try {
      return Agent ? new Agent({ headersTimeout: 0, bodyTimeout: 0 }) : undefined;
    } catch {
      return undefined;
    }
  })();
  return patientDispatcher;
}

function checkBaseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigurationError(`base URL ${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigurationError(`base URL ${JSON.stringify(value)} must start with http:// or https://`);
  }
  return value.replace(/\/+$/, "");
}

function checkToken(token: string): string {
  if (/[^\x20-\x7e]/.test(token)) {
    throw new ConfigurationError("the API token holds a line break or another character a header cannot carry " +
                                 "(was it read from a file with its newline?)");
  }
  return token;
}

function codeOf(error: unknown): string | undefined {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

function willNotHeal(error: unknown): boolean {
  const code = codeOf(error) ?? "";
  return code.startsWith("ERR_SSL") || code === "EPROTO" || code.startsWith("ERR_TLS") || code.includes("CERT");
}

async function encodeImage(image: ImageInput): Promise<string> {
  const bytes = typeof image === "string" ? await readFile(image) : image;
  return Buffer.from(bytes).toString("base64");
}

async function withImage(request: Record<string, unknown>): Promise<Record<string, unknown>> {
  const { image, ...rest } = request;
  return image === undefined ? rest : { ...rest, image_base64: await encodeImage(image as ImageInput) };
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

interface Call {
  body?: unknown;
  query?: Record<string, string | number>;
  headers?: Record<string, string>;
  /** Retried answers when the call is idempotent (a 429 is retried for any call). */
  retryStatuses?: Set<number>;
  options?: RequestOptions;
}

/** One connection's attempt: aborts on the caller's signal, on the timeout, or on `cancel()`. */
class Attempt {
  readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  timedOut = false;

  constructor(private readonly timeoutMs: number, readonly userSignal?: AbortSignal) {
    this.arm(timeoutMs);
    userSignal?.addEventListener("abort", this.onUserAbort, { once: true });
  }

  private readonly onUserAbort = () => this.controller.abort(this.userSignal?.reason);

  /** Restart the timer (a stream: the time allowed until the next chunk). */
  arm(ms: number = this.timeoutMs): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new Error("timed out"));
    }, ms);
  }

  done(): void {
    clearTimeout(this.timer);
    this.userSignal?.removeEventListener("abort", this.onUserAbort);
  }

  /** The SDK error for what fetch or a read threw. */
  error(error: unknown, baseUrl: string): I2VError {
    if (error instanceof I2VError) return error;
    if (this.userSignal?.aborted) return new APIUserAbortError({ cause: error });
    if (this.timedOut) return new APITimeoutError(`${baseUrl} did not answer in time`, { cause: error });
    let innermost = error;
    while (innermost instanceof Error && innermost.cause instanceof Error) innermost = innermost.cause;
    const reason = innermost instanceof Error ? innermost.message || codeOf(error) : String(innermost);
    return new APIConnectionError(`cannot reach ${baseUrl}: ${reason}`, { cause: error });
  }
}

/** One wait: the stream's place (Last-Event-ID), progress once per event, the back-off, the
 * deadline. Once a stream answered, progress comes from streams only: polling between
 * reconnections looks for the end (its progress would repeat what the resumed stream replays). */
class Follow {
  lastEventId: number | undefined;
  status = "queued";
  streamed = false;
  pollingOnly = false;
  failures = 0;
  private lastKey = "";
  readonly deadline: number;

  constructor(readonly jobId: string, private readonly options: WaitOptions) {
    this.deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
  }

  notify(progress: Progress): void {
    const key = `${progress.status}/${progress.step}/${progress.total}`;
    if (key !== this.lastKey) {
      this.lastKey = key;
      this.options.onProgress?.(progress);
    }
  }

  checkDeadline(): void {
    if (Date.now() > this.deadline) throw new WaitTimeoutError(this.jobId, this.status, this.options.timeoutMs);
  }

  remainingMs(): number {
    return Math.max(0, this.deadline - Date.now());
  }

  /** Progress for a new event; the job at its final event. */
  event(id: string | undefined, type: string, data: Record<string, unknown>): JobResponse | undefined {
    if (id && /^\d+$/.test(id)) {
      const number = Number(id);
      // A queued update repeats the id of the event before it; anything older was seen.
      if (this.lastEventId !== undefined &&
          (number < this.lastEventId || (number === this.lastEventId && type !== "queued"))) return undefined;
      this.lastEventId = number;
    }
    this.status = type;
    this.notify({ jobId: this.jobId, status: type, step: data.step as number | undefined,
                  total: data.total as number | undefined, message: data.message as string | undefined });
    return FINAL.has(type) && data.job ? data.job as JobResponse : undefined;
  }

  polled(job: JobResponse): JobResponse | undefined {
    this.status = job.status;
    this.failures = 0; // the gateway answers: look again at the poll interval
    const final = FINAL.has(job.status);
    if (final || !this.streamed) {
      this.notify({ jobId: this.jobId, status: job.status, step: job.progress?.step, total: job.progress?.total,
                    message: job.message });
    }
    return final ? job : undefined;
  }

  /** Throw what a wait cannot outlive; count a failure it can. */
  failed(error: unknown, noStream = false): void {
    const transient = error instanceof APIConnectionError && !(error instanceof WaitTimeoutError) ||
      error instanceof I2VError && error.status !== null && TRANSIENT_STATUSES.has(error.status) ||
      noStream || error instanceof StreamEnded;
    if (!transient) throw error;
    if (noStream && !this.streamed) this.pollingOnly = true;
    this.failures += 1;
    this.checkDeadline();
  }

  backoffMs(): number {
    const pollMs = this.options.pollIntervalMs ?? 1000;
    const delay = this.failures === 0 ? pollMs
      : Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** (this.failures - 1)) * (0.5 + Math.random() / 2);
    return Math.min(delay, this.remainingMs());
  }
}

class StreamEnded extends Error {}
class NoEventStream extends Error {}

export class Client {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly signingSecret: string | undefined;
  private readonly retry: Required<RetryOptions>;
  private readonly timeoutMs: number;
  private maxBodyBytes: number | undefined;
  private readonly fetchOptions: Record<string, unknown>;

  constructor(options: ClientOptions = {}) {
    this.baseUrl = checkBaseUrl(options.baseUrl ?? process.env.I2V_API_URL ?? "http://127.0.0.1:8000");
    this.token = checkToken(options.token ?? process.env.I2V_API_TOKEN ?? "");
    this.signingSecret = options.signingSecret ?? (process.env.I2V_REQUEST_SIGNING_SECRET || undefined);
    this.retry = { maxRetries: 3, backoffMs: 500, maxWaitMs: 30_000, ...options.retry };
    if (options.maxRetries !== undefined) this.retry.maxRetries = options.maxRetries;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const limit = options.maxBodyBytes ?? Number(process.env.I2V_MAX_BODY_BYTES || NaN);
    this.maxBodyBytes = Number.isFinite(limit) ? limit : undefined;
    this.fetchOptions = options.fetchOptions ?? {};
  }

  private headers(method: string, path: string, query: string, body: string, extra: Record<string, string>) {
    const headers: Record<string, string> = { ...extra };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body) headers["content-type"] = "application/json";
    if (this.signingSecret) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      const nonce = randomBytes(18).toString("base64url");
      const digest = createHash("sha256").update(body).digest("hex");
      const canonical = [method, path, query, timestamp, nonce, digest].join("\n");
      headers["x-signature-timestamp"] = timestamp;
      headers["x-signature-nonce"] = nonce;
      headers["x-signature"] = `v1=${createHmac("sha256", this.signingSecret).update(canonical).digest("hex")}`;
    }
    return headers;
  }

  /** fetch with this client's dispatcher and options; the Attempt's signal. */
  private async fetch(url: string, init: RequestInit, attempt: Attempt): Promise<Response> {
    const dispatcher = await longCallDispatcher();
    return fetch(url, { ...(dispatcher ? { dispatcher } : {}), ...this.fetchOptions, ...init,
                        signal: attempt.controller.signal } as RequestInit);
  }

  private prepare(method: string, path: string, call: Call): { url: string; body: string; query: string } {
    const query = new URLSearchParams(
      Object.entries(call.query ?? {}).map(([k, v]) => [k, String(v)])).toString();
    const body = call.body === undefined ? "" : JSON.stringify(call.body);
    if (this.maxBodyBytes !== undefined && Buffer.byteLength(body) > this.maxBodyBytes) {
      throw new PayloadTooLarge(413, `request body is larger than ${this.maxBodyBytes} bytes ` +
                                     `(${Buffer.byteLength(body)} bytes; refused before sending)`);
    }
    return { url: `${this.baseUrl}${path}${query ? `?${query}` : ""}`, body, query };
  }

  /** One call, its answer read whole; 429/502/503/504 and network errors of idempotent calls are
   * retried (Retry-After honoured), and a 429 or a connection never made of any call. */
  private async send(method: string, path: string, call: Call = {}): Promise<Answer> {
    const { url, body, query } = this.prepare(method, path, call);
    const idempotent = method !== "POST" || Boolean(call.headers?.["idempotency-key"]);
    const retryStatuses = idempotent ? call.retryStatuses ?? RETRY_STATUSES : ANY_CALL_RETRY_STATUSES;
    const maxRetries = call.options?.maxRetries ?? this.retry.maxRetries;
    const signal = call.options?.signal;
    for (let attempt = 1; ; attempt++) {
      const init = { method, headers: this.headers(method, path, query, body, call.headers ?? {}),
                     body: body || undefined };
      const tried = new Attempt(call.options?.timeoutMs ?? this.timeoutMs, signal);
      let answer: Answer;
      try {
        if (signal?.aborted) throw new APIUserAbortError({ cause: signal.reason });
        const response = await this.fetch(url, init, tried);
        answer = { status: response.status, headers: response.headers, text: await response.text() };
      } catch (raw) {
        const error = tried.error(raw, this.baseUrl);
        const retriable = error instanceof APIConnectionError && !willNotHeal(raw) &&
          (idempotent || NOT_SENT_CODES.has(codeOf(raw) ?? ""));
        if (!retriable || attempt > maxRetries) throw error;
        await sleep(this.backoff(attempt), signal);
        continue;
      } finally {
        tried.done();
      }
      if (answer.status === 413) this.learn(answer.text);
      if (!retryStatuses.has(answer.status) || attempt > maxRetries) return answer;
      const retryAfter = parseRetryAfter(answer.headers.get("retry-after"));
      if (retryAfter !== null && retryAfter * 1000 > this.retry.maxWaitMs) return answer;
      await sleep(retryAfter !== null ? retryAfter * 1000 : this.backoff(attempt), signal);
    }
  }

  private learn(text: string): void {
    const found = TOO_LARGE.exec(text);
    if (found) this.maxBodyBytes = Number(found[1]);
  }

  private backoff(attempt: number): number {
    return Math.min(8_000, this.retry.backoffMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
  }

  private json<T>(answer: Answer): T {
    if (answer.status >= 400) throw errorFrom(answer.status, answer.headers, answer.text);
    return JSON.parse(answer.text) as T;
  }

  /** POST /api/v1/generate: waits for the video. Retried only where nothing ran: a 429 (after its
   * Retry-After) and a connection never made. */
  async generate(request: VideoRequest, options: RequestOptions = {}): Promise<GenerateResponse> {
    return this.json(await this.send("POST", "/api/v1/generate", { body: await withImage(request), options }));
  }

  /** POST /api/v1/jobs with an Idempotency-Key (a fresh one unless given), so retries are safe. */
  async submit(request: VideoRequest & { callback_url?: string },
               options: { idempotencyKey?: string } & RequestOptions = {}): Promise<JobResponse> {
    const headers = { "idempotency-key": options.idempotencyKey ?? `i2v-${randomUUID()}` };
    return this.json(await this.send("POST", "/api/v1/jobs", { body: await withImage(request), headers, options }));
  }

  async get(jobId: string, options: RequestOptions = {}): Promise<JobResponse> {
    return this.json(await this.send("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}`, { options }));
  }

  async cancel(jobId: string, options: RequestOptions = {}): Promise<JobResponse> {
    return this.json(await this.send("DELETE", `/api/v1/jobs/${encodeURIComponent(jobId)}`, { options }));
  }

  async listJobs(options: { offset?: number; limit?: number } & RequestOptions = {}): Promise<JobListResponse> {
    const query = { offset: options.offset ?? 0, limit: options.limit ?? 20 };
    return this.json(await this.send("GET", "/api/v1/jobs", { query, options }));
  }

  /** POST /api/v1/batch: one job per item over `defaults`; each item is accepted or has its error. */
  async batch(items: Array<Partial<VideoRequest>>, options: {
    defaults?: Partial<VideoRequest>; callbackUrl?: string;
  } & RequestOptions = {}): Promise<BatchResponse> {
    const body: Record<string, unknown> = {
      defaults: await withImage(options.defaults ?? {}),
      items: await Promise.all(items.map((item) => withImage(item))),
    };
    if (options.callbackUrl) body.callback_url = options.callbackUrl;
    return this.json(await this.send("POST", "/api/v1/batch", { body, options }));
  }

  /** Until the job has ended. Progress, once per change, from its event stream (or polling where
   * there is none). Connection failures, 429 and 5xx answers and gateway restarts are ridden out
   * (the stream resumes with Last-Event-ID, polling in between, back-off capped at 5 s) until the
   * job ends or `timeoutMs` passes: then WaitTimeoutError. 401, 403 and 404 throw at once. */
  async wait(jobId: string, options: WaitOptions = {}): Promise<JobResponse> {
    const follow = new Follow(jobId, options);
    for (;;) {
      if (!follow.pollingOnly) {
        try {
          return await this.followStream(follow, options.signal);
        } catch (error) {
          follow.failed(error, error instanceof NoEventStream);
        }
      }
      try {
        const job = await this.get(jobId, { maxRetries: 0, timeoutMs: STREAM_IDLE_MS, signal: options.signal });
        const ended = follow.polled(job);
        if (ended) return ended;
        follow.checkDeadline();
      } catch (error) {
        follow.failed(error);
      }
      await sleep(follow.backoffMs(), options.signal);
    }
  }

  /** One connection to the job's events, read until its final event. */
  private async followStream(follow: Follow, signal?: AbortSignal): Promise<JobResponse> {
    const path = `/api/v1/jobs/${encodeURIComponent(follow.jobId)}/events`;
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (follow.lastEventId !== undefined) headers["last-event-id"] = String(follow.lastEventId);
    const tried = new Attempt(Math.min(STREAM_IDLE_MS, follow.remainingMs() + 1), signal);
    try {
      const response = await this.fetch(`${this.baseUrl}${path}`,
                                        { method: "GET", headers: this.headers("GET", path, "", "", headers) }, tried);
      if (response.status >= 400) {
        throw errorFrom(response.status, response.headers, await response.text());
      }
      if (response.status !== 200 || !response.body) {
        await response.body?.cancel();
        throw new StreamEnded(`events answered ${response.status}`);
      }
      if (!(response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
        await response.body.cancel();
        throw new NoEventStream("the events answer is not an event stream");
      }
      follow.streamed = true;
      follow.failures = 0;
      const decoder = new TextDecoder();
      let buffer = "";
      let fields: Record<string, string> = {};
      const reader = response.body.getReader();
      try {
        for (;;) {
          follow.checkDeadline();
          tried.arm(Math.min(STREAM_IDLE_MS, follow.remainingMs() + 1));
          const { value, done } = await reader.read();
          if (done) throw new StreamEnded("the event stream ended before the job did");
          buffer += decoder.decode(value, { stream: true });
          let newline: number;
          while ((newline = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, newline).replace(/\r$/, "");
            buffer = buffer.slice(newline + 1);
            if (line.startsWith(":")) continue;
            if (line) {
              const colon = line.indexOf(":");
              const name = colon < 0 ? line : line.slice(0, colon);
              fields[name] = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              continue;
            }
            const event = fields;
            fields = {};
            if (!event.event) continue;
            const job = follow.event(event.id, event.event, event.data ? JSON.parse(event.data) : {});
            if (job) return job;
          }
        }
      } finally {
        await reader.cancel().catch(() => undefined);
      }
    } catch (error) {
      if (error instanceof StreamEnded || error instanceof NoEventStream || error instanceof WaitTimeoutError) {
        throw error;
      }
      if (tried.timedOut && follow.remainingMs() === 0) follow.checkDeadline();
      throw tried.error(error, this.baseUrl);
    } finally {
      tried.done();
    }
  }

  /** Save the video of a generate answer, a succeeded job or a URL to `path` (no token is sent). */
  async download(source: string | GenerateResponse | JobResponse, path: string,
                 options: RequestOptions = {}): Promise<string> {
    let url: string;
    if (typeof source === "string") url = source;
    else if ("job_id" in source) {
      if (!source.result) throw new Error(`job ${source.job_id} is ${source.status}: it has no video`);
      url = source.result.video_url;
    } else url = source.video_url;
    const tried = new Attempt(options.timeoutMs ?? this.timeoutMs, options.signal);
    let bytes: Buffer;
    try {
      const response = await this.fetch(url, { method: "GET" }, tried);
      if (response.status >= 400) throw errorFrom(response.status, response.headers, await response.text());
      bytes = Buffer.from(await response.arrayBuffer());
    } catch (error) {
      throw tried.error(error, this.baseUrl);
    } finally {
      tried.done();
    }
    await writeFile(path, bytes);
    return path;
  }
}

/** The 0.3 name of WaitTimeoutError. */
export const WaitTimeout = WaitTimeoutError;
export type WaitTimeout = WaitTimeoutError;
