/**
 * The declarative-sync server: a Hono app with `POST /push`, `POST /pull` and
 * `GET /health`, running the core's schema, HLC and merge code on libSQL.
 *
 * @example
 * ```ts
 * import { createClient } from "@libsql/client";
 * import { createSyncServer, openServerDatabase, serve } from "@declarative/sync/server";
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

export { createSyncServer, type SyncServerLimits, type SyncServerOptions } from "./app.ts";
export {
  openServerDatabase,
  type Principal,
  type PullOptions,
  type PushOptions,
  type ServerDatabase,
  type ServerDatabaseOptions,
} from "./database.ts";
export { type FetchHandler, type RunningServer, serve, type ServeOptions } from "./serve.ts";
export * from "../src/protocol.ts";
