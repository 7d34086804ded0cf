// Against a running gateway (tests/client/test_node_sdk.py starts one and sets the environment):
// I2V_API_URL, I2V_API_TOKEN, I2V_TEST_IMAGE (a PNG path), I2V_WEBHOOK_SECRET.
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFile, stat } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Client, NotFound, Unauthorized, Unprocessable, verifyWebhook } from "../dist/index.js";

const image = process.env.I2V_TEST_IMAGE;
const small = { resolution: "256p", num_frames: 8, steps: 2 };

test("generate answers a video that downloads", async () => {
  const client = new Client();
  const result = await client.generate({ image, prompt: "a red kite", ...small, seed: 5 });
  assert.equal(result.success, true);
  assert.equal(result.seed, 5);
  const path = join(tmpdir(), `i2v-node-${process.pid}.mp4`);
  await client.download(result, path);
  assert.ok((await stat(path)).size > 1000);
  const bytes = await readFile(path);
  assert.equal(bytes.subarray(4, 8).toString(), "ftyp");
});

test("submit, wait with progress, get, list, cancel", async () => {
  const client = new Client();
  const job = await client.submit({ image: await readFile(image), prompt: "a kite", ...small, steps: 6 });
  assert.equal(job.status, "queued");
  const seen = [];
  const ended = await client.wait(job.job_id, { onProgress: (p) => seen.push(p) });
  assert.equal(ended.status, "succeeded");
  const steps = seen.filter((p) => p.step !== undefined).map((p) => p.step);
  assert.deepEqual(steps, [1, 2, 3, 4, 5, 6]);
  assert.equal((await client.get(job.job_id)).result.video_url, ended.result.video_url);
  assert.ok((await client.listJobs({ limit: 5 })).jobs.some((j) => j.job_id === job.job_id));

  const long = await client.submit({ image, prompt: "a long one", ...small, steps: 150 });
  await client.cancel(long.job_id);
  assert.equal((await client.wait(long.job_id)).status, "cancelled");

  const batch = await client.batch([{ prompt: "one" }, { prompt: "two", num_frames: 999 }],
                                   { defaults: { image, ...small, steps: 1 } });
  assert.equal(batch.accepted, 1);
  assert.equal(batch.items[1].error.status, 422);
  assert.equal((await client.wait(batch.items[0].job.job_id)).status, "succeeded");
});

test("errors are typed by status", async () => {
  await assert.rejects(new Client({ token: "wrong-token-0123456789" }).listJobs(), Unauthorized);
  await assert.rejects(new Client().get("no-such-job"), NotFound);
  await assert.rejects(new Client().generate({ image, prompt: "x", num_frames: 999 }),
                       (error) => error instanceof Unprocessable && error.status === 422);
});

test("a real webhook delivery verifies, and an altered one does not", async () => {
  const deliveries = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      deliveries.push({ body, headers: request.headers });
      response.writeHead(204).end();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    const client = new Client();
    const callback_url = `http://127.0.0.1:${server.address().port}/hooks`;
    const job = await client.submit({ image, prompt: "hooked", ...small, steps: 1, callback_url });
    await client.wait(job.job_id);
    while (deliveries.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
    const { body, headers } = deliveries[0];
    const event = verifyWebhook(process.env.I2V_WEBHOOK_SECRET, body, headers);
    assert.equal(event.type, "job.succeeded");
    assert.equal(event.data.job_id, job.job_id);
    assert.throws(() => verifyWebhook(process.env.I2V_WEBHOOK_SECRET, body.replace("succeeded", "failed"), headers));
  } finally {
    server.close();
  }
});
