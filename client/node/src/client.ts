// A small client over global fetch (Node 20+): the same operations as the Python SDK.
import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { I2VError, errorOf, parseRetryAfter } from "./errors.js";
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
  /** Retries of 429 and 503 answers (and network errors) of idempotent calls. */
  maxRetries?: number;
  backoffMs?: number;
  /** A Retry-After longer than this is not waited for: the error is thrown at once. */
  maxWaitMs?: number;
}

export interface ClientOptions {
  /** Defaults to I2V_API_URL, else http://127.0.0.1:8000. */
  baseUrl?: string;
  /** An API key or a JWT; defaults to I2V_API_TOKEN. */
  token?: string;
  /** When the gateway requires signed requests (SECURITY.md); defaults to I2V_REQUEST_SIGNING_SECRET. */
  signingSecret?: string;
  retry?: RetryOptions;
}

export interface WaitOptions {
  onProgress?: (progress: Progress) => void;
  timeoutMs?: number;
  pollIntervalMs?: number;
}

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const RETRY_STATUSES = new Set([429, 503]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function encodeImage(image: ImageInput): Promise<string> {
  const bytes = typeof image === "string" ? await readFile(image) : image;
  return Buffer.from(bytes).toString("base64");
}

async function withImage(request: Record<string, unknown>): Promise<Record<string, unknown>> {
  const { image, ...rest } = request;
  return image === undefined ? rest : { ...rest, image_base64: await encodeImage(image as ImageInput) };
}

export class Client {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly signingSecret: string | undefined;
  private readonly retry: Required<RetryOptions>;

  constructor(options: ClientOptions = {}) {
    this.baseUrl = (options.baseUrl ?? process.env.I2V_API_URL ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
    this.token = options.token ?? process.env.I2V_API_TOKEN ?? "";
    this.signingSecret = options.signingSecret ?? (process.env.I2V_REQUEST_SIGNING_SECRET || undefined);
    this.retry = { maxRetries: 3, backoffMs: 500, maxWaitMs: 30_000, ...options.retry };
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

  /** One call; 429/503 and network errors of idempotent calls are retried (Retry-After honoured). */
  private async send(method: string, path: string, options: {
    body?: unknown; query?: Record<string, string | number>; headers?: Record<string, string>;
  } = {}): Promise<Response> {
    const query = new URLSearchParams(
      Object.entries(options.query ?? {}).map(([k, v]) => [k, String(v)])).toString();
    const body = options.body === undefined ? "" : JSON.stringify(options.body);
    const idempotent = method !== "POST" || Boolean(options.headers?.["idempotency-key"]);
    for (let attempt = 1; ; attempt++) {
      const url = `${this.baseUrl}${path}${query ? `?${query}` : ""}`;
      const init = { method, headers: this.headers(method, path, query, body, options.headers ?? {}),
                     body: body || undefined };
      let response: Response;
      try {
        response = await fetch(url, init);
      } catch (error) {
        if (!idempotent || attempt > this.retry.maxRetries) throw error;
        await sleep(this.backoff(attempt));
        continue;
      }
      if (!idempotent || !RETRY_STATUSES.has(response.status) || attempt > this.retry.maxRetries) return response;
      const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
      if (retryAfter !== null && retryAfter * 1000 > this.retry.maxWaitMs) return response;
      await response.body?.cancel();
      await sleep(retryAfter !== null ? retryAfter * 1000 : this.backoff(attempt));
    }
  }

  private backoff(attempt: number): number {
    return Math.min(8_000, this.retry.backoffMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
  }

  private async json<T>(response: Response): Promise<T> {
    if (response.status >= 400) throw await errorOf(response);
    return (await response.json()) as T;
  }

  /** POST /api/v1/generate: waits for the video (not retried: it is not idempotent). */
  async generate(request: VideoRequest): Promise<GenerateResponse> {
    return this.json(await this.send("POST", "/api/v1/generate", { body: await withImage(request) }));
  }

  /** POST /api/v1/jobs with an Idempotency-Key (a fresh one unless given), so retries are safe. */
  async submit(request: VideoRequest & { callback_url?: string },
               options: { idempotencyKey?: string } = {}): Promise<JobResponse> {
    const headers = { "idempotency-key": options.idempotencyKey ?? `i2v-${randomUUID()}` };
    return this.json(await this.send("POST", "/api/v1/jobs", { body: await withImage(request), headers }));
  }

  async get(jobId: string): Promise<JobResponse> {
    return this.json(await this.send("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}`));
  }

  async cancel(jobId: string): Promise<JobResponse> {
    return this.json(await this.send("DELETE", `/api/v1/jobs/${encodeURIComponent(jobId)}`));
  }

  async listJobs(options: { offset?: number; limit?: number } = {}): Promise<JobListResponse> {
    const query = { offset: options.offset ?? 0, limit: options.limit ?? 20 };
    return this.json(await this.send("GET", "/api/v1/jobs", { query }));
  }

  /** POST /api/v1/batch: one job per item over `defaults`; each item is accepted or has its error. */
  async batch(items: Array<Partial<VideoRequest>>, options: {
    defaults?: Partial<VideoRequest>; callbackUrl?: string;
  } = {}): Promise<BatchResponse> {
    const body: Record<string, unknown> = {
      defaults: await withImage(options.defaults ?? {}),
      items: await Promise.all(items.map((item) => withImage(item))),
    };
    if (options.callbackUrl) body.callback_url = options.callbackUrl;
    return this.json(await this.send("POST", "/api/v1/batch", { body }));
  }

  /** Until the job has ended; progress from its event stream, or from polling if the stream fails. */
  async wait(jobId: string, options: WaitOptions = {}): Promise<JobResponse> {
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    let last = "";
    const notify = (progress: Progress) => {
      const key = `${progress.status}/${progress.step}/${progress.total}`;
      if (key !== last) {
        last = key;
        options.onProgress?.(progress);
      }
    };
    try {
      const ended = await this.waitStream(jobId, notify, deadline);
      if (ended) return ended;
    } catch (error) {
      if (error instanceof I2VError || error instanceof WaitTimeout) throw error;
      // the stream failed (a proxy, a cut connection): poll instead
    }
    for (;;) {
      const job = await this.get(jobId);
      notify({ jobId, status: job.status, step: job.progress?.step, total: job.progress?.total,
               message: job.message });
      if (FINAL.has(job.status)) return job;
      if (Date.now() > deadline) throw new WaitTimeout(jobId, job.status);
      await sleep(Math.min(options.pollIntervalMs ?? 1000, Math.max(0, deadline - Date.now())));
    }
  }

  private async waitStream(jobId: string, notify: (progress: Progress) => void,
                           deadline: number): Promise<JobResponse | null> {
    const response = await this.send("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}/events`,
                                      { headers: { accept: "text/event-stream" } });
    if ([401, 403, 404].includes(response.status)) throw await errorOf(response);
    if (response.status !== 200 || !response.body) {
      await response.body?.cancel();
      return null;
    }
    const decoder = new TextDecoder();
    let buffer = "";
    let fields: Record<string, string> = {};
    let status = "queued";
    const reader = response.body.getReader();
    try {
      for (;;) {
        if (Date.now() > deadline) throw new WaitTimeout(jobId, status);
        const { value, done } = await reader.read();
        if (done) return null;
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
          status = event.event;
          const data = event.data ? JSON.parse(event.data) : {};
          notify({ jobId, status, step: data.step, total: data.total, message: data.message });
          if (FINAL.has(status) && data.job) return data.job as JobResponse;
        }
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }

  /** Save the video of a generate answer, a succeeded job or a URL to `path` (no token is sent). */
  async download(source: string | GenerateResponse | JobResponse, path: string): Promise<string> {
    let url: string;
    if (typeof source === "string") url = source;
    else if ("job_id" in source) {
      if (!source.result) throw new Error(`job ${source.job_id} is ${source.status}: it has no video`);
      url = source.result.video_url;
    } else url = source.video_url;
    const response = await fetch(url);
    if (response.status >= 400) throw await errorOf(response);
    await writeFile(path, Buffer.from(await response.arrayBuffer()));
    return path;
  }
}

export class WaitTimeout extends Error {
  constructor(readonly jobId: string, readonly status: string) {
    super(`job ${jobId} is still ${status}`);
    this.name = "WaitTimeout";
  }
}
