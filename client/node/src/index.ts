export * from "./client.js";
export * from "./errors.js";
export { verifyWebhook, type WebhookEvent } from "./webhooks.js";
export type { components, paths } from "./openapi.js";
