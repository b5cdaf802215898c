/**
 * The sync endpoint as a fetch handler, for Cloudflare Workers, Deno Deploy
 * and other fetch hosts: `export default createEdgeServer({ schema })` is a
 * whole worker. The endpoint is stateless; state lives in a libSQL server or
 * Turso database reached over HTTP (`@libsql/client/web`, no Node APIs), so
 * any number of isolates can serve one database.
 *
 * The database is `url` / `authToken` from the options, else the
 * `LIBSQL_URL` / `LIBSQL_AUTH_TOKEN` bindings (the `env` argument of a
 * Worker's `fetch`), else the environment (read with Hono's `env()`; on Deno
 * that needs `--allow-env`, and where reading it is forbidden the bindings
 * alone decide).
 *
 * The endpoint is built once per isolate, on its first request (a Worker may
 * not do I/O outside a request). When that fails the request is answered
 * and the next request tries again, so an isolate recovers by itself:
 *
 * - no database URL: 500 `misconfigured`;
 * - the database cannot be reached: 503 `unavailable` (clients retry with
 *   backoff); the same answer when it goes down later;
 * - anything else (a destructive migration, a refused token): 500
 *   `misconfigured`, with the reason.
 *
 * Pulls may be held (`wait`), for at most 20 s unless `limits.maxPullWait`
 * says otherwise: each held pull reads the database's sequence once a second
 * by itself (a Worker's request may not be woken by another's), so a change
 * reaches a live client within about a second. Each read is a subrequest of
 * the held request; the Workers free plan allows 50 per request.
 *
 * @example
 * ```ts
 * // worker.ts: `wrangler deploy`, with LIBSQL_URL and LIBSQL_AUTH_TOKEN set
 * // as the Worker's variables and secrets; or `deno serve -A worker.ts`.
 * import { createEdgeServer } from "@declarative/sync/edge";
 * import { schema } from "./schema.ts";
 *
 * export default createEdgeServer({
 *   schema,
 *   authorize: (c) => verify(c.req.header("authorization")), // → { id } or null
 * });
 * ```
 *
 * @module
 */

import { type Context, type ExecutionContext, Hono } from "hono";
import { env as runtimeEnv } from "hono/adapter";
import { libsqlAdapter, type Schema, type TableDef } from "../src/internal.ts";
import { createSyncServer, fail, isDatabaseUnavailable, type SyncServerLimits } from "./app.ts";
import { openServerDatabase, type Principal } from "./database.ts";

// The types this entry's signatures name, so its documentation is complete.
// (Not Hono's `Context`: re-exported, its declarations would be documented
// as this entry's; it is named by an internal alias below.)
export type { Schema, TableDef } from "../src/internal.ts";
export type { SyncServerLimits } from "./app.ts";
export type { Principal } from "./database.ts";

/**
 * Hono's request context (`Context` of the `hono` package), as `authorize`
 * receives it. Named here, not re-exported: its documentation is Hono's.
 *
 * @internal
 */
type HonoContext = Context;

/** Options of {@linkcode createEdgeServer}. */
export interface EdgeServerOptions<T extends Record<string, TableDef> = Record<string, TableDef>> {
  /** The same schema the clients declare. */
  schema: Schema<T>;
  /**
   * Who is asking: a principal, or null for 401 (as in `createSyncServer`).
   * Without it every request is served and scopes are not enforced.
   */
  authorize?: (
    c: HonoContext,
  ) => Principal | null | undefined | Promise<Principal | null | undefined>;
  /** How far (ms) a change's version may be ahead of server time (default 60 s). */
  maxDrift?: number;
  /** Endpoint limits (as in `createSyncServer`). */
  limits?: SyncServerLimits;
  /** The libSQL database (`libsql://…`, `https://…`, `http://…`); default the `LIBSQL_URL` setting. */
  url?: string;
  /** Its auth token; default the `LIBSQL_AUTH_TOKEN` setting. */
  authToken?: string;
}

/** A fetch handler: what `export default` of a Worker or a `deno serve` module is. */
export interface EdgeServer {
  /**
   * Answers one request of the sync endpoint (`POST /push`, `POST /pull`,
   * `GET /health`).
   *
   * @param request the request
   * @param env the Worker's bindings (`LIBSQL_URL`, `LIBSQL_AUTH_TOKEN`), if any
   * @param ctx the Worker's execution context, if any
   */
  fetch(request: Request, env?: Record<string, unknown>, ctx?: unknown): Promise<Response>;
}

// The settings an edge endpoint reads from its bindings or environment.
interface Settings {
  url: string | undefined;
  authToken: string | undefined;
}

// A held pull at the edge reads the sequence once a second, for at most
// 20 s: about 20 subrequests, within what a Worker's request may make.
const EDGE_WATCH_INTERVAL_MS = 1_000;
const EDGE_MAX_PULL_WAIT_MS = 20_000;

// The endpoint, once built.
type Handler = ReturnType<typeof createSyncServer>;

// The endpoint's environment: the bindings, whatever their shape.
type Env = { Bindings: Record<string, unknown> | undefined };

/**
 * Creates the sync endpoint as a fetch handler; call it once, at the top
 * level of the module (one endpoint per isolate).
 *
 * @param options the schema, `authorize`, `maxDrift`, `limits` and, unless
 * the bindings or the environment give them, the database URL and token
 * @returns `{ fetch }`: `export default` it
 *
 * @example
 * ```ts
 * export default createEdgeServer({ schema, url: "libsql://my-db.turso.io", authToken });
 * ```
 */
export function createEdgeServer<T extends Record<string, TableDef>>(
  options: EdgeServerOptions<T>,
): EdgeServer {
  let built: Promise<Handler> | undefined;

  const build = async (url: string, authToken: string | undefined): Promise<Handler> => {
    // Imported here, where the endpoint is built, rather than at the top: a
    // bundle inlines it all the same, and `deno doc` then does not walk the
    // client's Node type references (it cannot resolve @types/node's).
    const { createClient } = await import("@libsql/client/web");
    const adapter = libsqlAdapter(createClient({ url, authToken }));
    try {
      // Each request writes its own pushes, and a held pull watches the
      // database on its own: on Workers, work one request leaves to another
      // is cancelled when the first one ends.
      const database = await openServerDatabase({
        adapter,
        schema: options.schema,
        groupCommit: false,
        sharedWatch: false,
        watchInterval: EDGE_WATCH_INTERVAL_MS,
      });
      return createSyncServer({
        database,
        authorize: options.authorize,
        maxDrift: options.maxDrift,
        limits: { maxPullWait: EDGE_MAX_PULL_WAIT_MS, ...options.limits },
      });
    } catch (error) {
      // The client of a failed start is dropped: the next request opens its own.
      await adapter.close().catch(() => undefined);
      throw error;
    }
  };

  const entry = new Hono<Env>();
  entry.all("*", async (c) => {
    if (built === undefined) {
      const { url, authToken } = settingsOf(c, options);
      if (url === undefined) {
        console.error("The sync endpoint cannot start: LIBSQL_URL is not set");
        const message = "The sync endpoint cannot start: set LIBSQL_URL to the libSQL database";
        return fail(c, "misconfigured", message);
      }
      const attempt = build(url, authToken);
      built = attempt;
      // A failed start is forgotten: the next request tries again.
      attempt.catch(() => {
        if (built === attempt) built = undefined;
      });
    }
    let handler: Handler;
    try {
      handler = await built;
    } catch (error) {
      return answerStartFailure(c, error);
    }
    return await handler.fetch(c.req.raw, c.env, executionContextOf(c));
  });

  return {
    fetch: async (request, env, ctx) =>
      await entry.fetch(request, env, ctx as ExecutionContext | undefined),
  };
}

// Why the endpoint could not be built, as the answer to the request that
// tried: a database that cannot be reached is a passing failure (503), the
// rest needs the operator (a destructive migration, a refused token).
function answerStartFailure(c: Context, error: unknown): Response {
  const message = (error as Error)?.message ?? String(error);
  if (isDatabaseUnavailable(error)) {
    console.error(`The sync endpoint cannot reach its database: ${message}`);
    // The reason is logged, not answered: it names the database's address.
    return fail(c, "unavailable", "The database cannot be reached; try again later");
  }
  console.error(error);
  return fail(c, "misconfigured", `The sync endpoint cannot start: ${message}`);
}

// The database settings: the options, else the bindings, else the
// environment (which may be unreadable without permission).
function settingsOf(c: Context<Env>, options: Partial<Settings>): Settings {
  const bindings = c.env ?? {};
  let environment: Record<string, unknown> = {};
  try {
    environment = runtimeEnv<Record<string, unknown>>(c as Context) ?? {};
  } catch {
    // No permission to read the environment: the bindings alone decide.
  }
  const setting = (name: string): string | undefined => {
    const value = bindings[name] ?? environment[name];
    return typeof value === "string" && value !== "" ? value : undefined;
  };
  return {
    url: options.url ?? setting("LIBSQL_URL"),
    authToken: options.authToken ?? setting("LIBSQL_AUTH_TOKEN"),
  };
}

// The execution context of the request, when the host gave one (Hono's
// getter throws otherwise).
function executionContextOf(c: Context): ExecutionContext | undefined {
  try {
    return c.executionCtx;
  } catch {
    return undefined;
  }
}
