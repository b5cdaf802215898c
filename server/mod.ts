/**
 * The declarative-sync server: a Hono app with the push/pull endpoint.
 *
 * This entry point currently exports the wire protocol version only;
 * `createSyncServer` lands together with the sync manager and HTTP transport.
 *
 * @example
 * ```ts
 * import { PROTOCOL_VERSION } from "@declarative/sync/server";
 * console.log(PROTOCOL_VERSION); // 1
 * ```
 *
 * @module
 */

export { PROTOCOL_VERSION } from "../src/protocol.ts";
