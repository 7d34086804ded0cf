// The Node SDK under faults, driven by tests/client/test_faults.py (which owns the gateway).
// Environment: I2V_API_URL, I2V_API_TOKEN, I2V_NODE_SDK (dist/index.js), and per mode:
//   wait JOB_ID   follow the job (the test restarts the gateway meanwhile), save it to I2V_OUTPUT;
//                 prints {progress} per change, then {status, bytes}
//   retry         with I2V_TEST_IMAGE: a generate right after a submission meets a 429; prints
//                 {refused, succeeded, sent}
import { stat } from "node:fs/promises";
import { pathToFileURL } from "node:url";

const { Client, RateLimited } = await import(pathToFileURL(process.env.I2V_NODE_SDK).href);
const client = new Client();
const [mode, jobId] = process.argv.slice(2);

if (mode === "wait") {
  const ended = await client.wait(jobId, {
    timeoutMs: 300_000,
    onProgress: (progress) => console.log(JSON.stringify({ progress })),
  });
  await client.download(ended, process.env.I2V_OUTPUT);
  console.log(JSON.stringify({ status: ended.status, bytes: (await stat(process.env.I2V_OUTPUT)).size }));
} else if (mode === "retry") {
  const request = { image: process.env.I2V_TEST_IMAGE, resolution: "256p", num_frames: 8, steps: 1 };
  await client.submit({ ...request, prompt: "takes the budget" });
  let refused = null;
  try {
    await client.generate({ ...request, prompt: "refused" }, { maxRetries: 0 });
  } catch (error) {
    if (!(error instanceof RateLimited)) throw error;
    refused = error.status;
  }
  const realFetch = globalThis.fetch;
  let sent = 0;
  globalThis.fetch = (url, init) => {
    if (String(url).endsWith("/api/v1/generate")) sent += 1;
    return realFetch(url, init);
  };
  const result = await client.generate({ ...request, prompt: "retried" });
  console.log(JSON.stringify({ refused, succeeded: result.success, sent }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
