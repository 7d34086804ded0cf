// Verify the gateway's webhook deliveries (Standard Webhooks) with the standardwebhooks package.
import { Webhook } from "standardwebhooks";
import type { components } from "./openapi.js";

export type JobResponse = components["schemas"]["JobResponse"];

export interface WebhookEvent {
  type: "job.succeeded" | "job.failed" | "job.cancelled" | string;
  timestamp?: string;
  data: JobResponse;
}

/**
 * The delivery's event if `headers` (webhook-id, webhook-timestamp, webhook-signature) carry a
 * valid signature of `body` with `secret` (whsec_...); throws otherwise. Pass the raw body text.
 */
export function verifyWebhook(secret: string, body: string, headers: Record<string, string>): WebhookEvent {
  const lowered: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) lowered[name.toLowerCase()] = value;
  return new Webhook(secret).verify(body, lowered) as WebhookEvent;
}
