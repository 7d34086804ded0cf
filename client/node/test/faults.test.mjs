// Faults against a running gateway (tests/client/test_contract_and_node.py sets the environment):
// every failure is an I2VError, configuration mistakes fail at once, per-call timeouts and signals,
// the 413 seen once. The restart mid-wait is tests/client/test_faults.py's (it drives the gateway).
import assert from "node:assert/strict";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { test } from "node:test";
import {
  APIConnectionError, APITimeoutError, APIUserAbortError, Client, ConfigurationError, I2VError, PayloadTooLarge,
  WaitTimeout, WaitTimeoutError,
} from "../dist/index.js";

const image = process.env.I2V_TEST_IMAGE;
const small = { resolution: "256p", num_frames: 8 };

async function closedPort() {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

test("configuration mistakes fail at once", () => {
  for (const baseUrl of ["http://127.0.0.1:22l00", "ftp://example.com", "127.0.0.1:8000"]) {
    assert.throws(() => new Client({ baseUrl }), (error) => error instanceof ConfigurationError &&
      error instanceof I2VError && error.status === null);
  }
  assert.throws(() => new Client({ token: "token\n" }), /line break/);
});

test("network failures are APIConnectionError with the cause", async () => {
  const port = await closedPort();
  for (const baseUrl of [`http://127.0.0.1:${port}`, "http://no-such-host.invalid",
                         process.env.I2V_API_URL.replace("http:", "https:")]) {
    await assert.rejects(new Client({ baseUrl }).listJobs({ maxRetries: 0 }), (error) =>
      error instanceof APIConnectionError && error instanceof I2VError && error.cause instanceof Error);
  }
});

test("a per-call timeout, a signal and a wait timeout", async () => {
  const client = new Client();
  await assert.rejects(client.generate({ image, prompt: "too slow", ...small, steps: 150 },
                                       { timeoutMs: 1500, maxRetries: 0 }), APITimeoutError);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 500);
  await assert.rejects(client.generate({ image, prompt: "aborted", ...small, steps: 150 },
                                       { signal: controller.signal }), APIUserAbortError);
  const job = await client.submit({ image, prompt: "waited for too briefly", ...small, steps: 60 });
  await assert.rejects(client.wait(job.job_id, { timeoutMs: 500 }), (error) =>
    error instanceof WaitTimeoutError && error instanceof WaitTimeout && error instanceof I2VError &&
    error.jobId === job.job_id);
  await client.cancel(job.job_id);
});

test("an oversized body is one 413, then refused before sending", async () => {
  const realFetch = globalThis.fetch;
  let sent = 0;
  globalThis.fetch = (...args) => {
    if (!String(args[0]).startsWith("data:")) sent += 1;
    return realFetch(...args);
  };
  try {
    const client = new Client();
    // 24 MB of base64, 12x the gateway's limit: more than socket buffers hold (the gateway reads
    // and drops it, so fetch reads the 413 instead of failing on a closed connection).
    const tooLarge = randomBytes(18 * 1024 * 1024);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(client.submit({ image: tooLarge, prompt: "too large", ...small, steps: 1 }),
                           (error) => error instanceof PayloadTooLarge && error.status === 413);
    }
    assert.equal(sent, 1);
  } finally {
    globalThis.fetch = realFetch;
  }
});
