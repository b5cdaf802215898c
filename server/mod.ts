/**
 * The declarative-sync server: a Hono app with `POST /push`, `POST /pull`,
 * `GET /health` and `GET /schema`, running the core's schema, HLC and merge code on libSQL.
 * This entry imports no `node:*` module, so a Worker may bundle it; what
 * listens on a port on Node, Deno or Bun is `serve`, from
 * `@declarative/sync/serve`, and the endpoint as a Worker's fetch handler is
 * `createEdgeServer`, from `@declarative/sync/edge`.
 *
 * @example
 * ```ts
 * import { createClient } from "@libsql/client";
 * import { createSyncServer, openServerDatabase } from "@declarative/sync/server";
 * import { serve } from "@declarative/sync/serve";
 * import { libsqlAdapter } from "@declarative/sync/libsql";
 *
 * const database = await openServerDatabase({
 *   adapter: libsqlAdapter(createClient({ url: "file:data/sync.db" })),
 *   schema,
 * });
 * const app = createSyncServer({ database, authorize: (c) => ({ id: "anonymous" }) });
 * await serve(app.fetch, { port: 8787 });
 * ```
 *
 * @module
 */

export {
  createSyncServer,
  type SyncServerEnv,
  type SyncServerLimits,
  type SyncServerOptions,
} from "./app.ts";
export {
  type HeldPullOptions,
  openServerDatabase,
  type Principal,
  type PullOptions,
  type PushOptions,
  type PushOutcome,
  type ServerDatabase,
  type ServerDatabaseOptions,
} from "./database.ts";
// The core's types the server's own signatures name, so the documentation of
// this entry is complete. (Not Hono's `Context` and `Hono`: re-exported, their
// own declarations would be documented as this entry's; `app.ts` names them
// as internal aliases.)
export type { Schema, SqlAdapter, TableDef } from "../src/internal.ts";
// The wire protocol (`src/protocol.ts`, `src/protocol_schemas.ts`), as this
// entry has always exported it, named one by one: the core's internal
// surface stays internal.
export {
  createProtocolSchemas,
  createPullEnvelopeSchema,
  CURSOR_PATTERN,
  DEFAULT_MAX_CHANGES_PER_PUSH,
  DEFAULT_MAX_PULL_LIMIT,
  describeIssues,
  ERROR_STATUS,
  type ErrorResponse,
  type HeldRange,
  MAX_HELD_RANGES,
  PROTOCOL_VERSION,
  type ProtocolLimits,
  type ProtocolSchemas,
  type PullEnvelope,
  type PullRequest,
  type PullResponse,
  type PullRow,
  type PullTableChanges,
  type PushChange,
  type PushRequest,
  type PushResponse,
  type PushResult,
  type RejectionCode,
  type WireErrorCode,
  type WireErrorStatus,
} from "../src/internal.ts";
