/**
 * The fetch-based client transport for the declarative-sync server.
 *
 * This entry point currently exports the wire protocol version only;
 * `createHttpSync` (a ready `{ onFetch, onSend }` pair for `ServerSyncManager`)
 * lands together with the sync server and manager.
 *
 * @example
 * ```ts
 * import { PROTOCOL_VERSION } from "@declarative/sync/http";
 * console.log(PROTOCOL_VERSION); // 1
 * ```
 *
 * @module
 */

export { PROTOCOL_VERSION } from "./src/protocol.ts";
