/**
 * The fetch-based client transport for the declarative-sync server:
 * `createHttpSync({ url })` returns the `{ onFetch, onSend }` pair that
 * `ServerSyncManager` takes, so most apps write no API client at all.
 *
 * @example
 * ```ts
 * import { ServerSyncManager } from "@declarative/sync";
 * import { createHttpSync } from "@declarative/sync/http";
 *
 * const manager = new ServerSyncManager({
 *   database,
 *   syncInterval: 60_000,
 *   ...createHttpSync({ url: "http://127.0.0.1:8787", headers: { authorization: "Bearer …" } }),
 * });
 * manager.start();
 * ```
 *
 * @module
 */

export { createHttpSync, type HttpSync, type HttpSyncOptions } from "./src/http_sync.ts";
export * from "./src/protocol.ts";
export {
  createProtocolSchemas,
  createPullEnvelopeSchema,
  describeIssues,
  type ProtocolLimits,
  type ProtocolSchemas,
  type PullEnvelope,
} from "./src/protocol_schemas.ts";
