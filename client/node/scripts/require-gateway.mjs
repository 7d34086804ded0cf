// `npm test` runs this first (package.json's pretest): the tests talk to a running gateway, so
// without one, or without the variables that point at it, say so in one line and stop, instead
// of a stack trace from the first test. tests/client/test_contract_and_node.py sets them all.
import { existsSync } from "node:fs";

const NEEDED = ["I2V_API_TOKEN", "I2V_TEST_IMAGE", "I2V_WEBHOOK_SECRET"];
const url = (process.env.I2V_API_URL || "http://127.0.0.1:8000").replace(/\/+$/, "");
const HOW = "start one in the checkout with `export I2V_WEBHOOK_SECRET=$(.venv/bin/python " +
  "scripts/new_webhook_secret.py) I2V_WEBHOOK_ALLOW_PRIVATE=true; scripts/start_app.sh`, then run npm test here with " +
  "that I2V_WEBHOOK_SECRET, I2V_API_TOKEN=$(cat ../../.api_token), I2V_TEST_IMAGE=../../gateway/ui/examples/kite.png " +
  "(any PNG) and I2V_API_URL unless it is http://127.0.0.1:8000";

function stop(message) {
  console.error(`npm test: ${message}`);
  process.exit(1);
}

if (!existsSync(new URL("../node_modules/.bin/tsc", import.meta.url))) {
  stop("the packages are not installed: run `npm ci` in client/node first");
}
const missing = NEEDED.filter((name) => !process.env[name]);
if (missing.length > 0) {
  stop(`the tests need a running gateway and ${missing.join(", ")} (not set): ${HOW}`);
}
if (!existsSync(process.env.I2V_TEST_IMAGE)) {
  stop(`I2V_TEST_IMAGE names no file (${process.env.I2V_TEST_IMAGE}): give the path of a PNG`);
}
try {
  await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10000) });
} catch {
  stop(`no gateway answers at ${url} (I2V_API_URL): ${HOW}`);
}
