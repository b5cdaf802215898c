/**
 * The sync endpoint as an edge module: `export default { fetch }` for
 * Cloudflare Workers, Deno Deploy (`deno serve server/edge.ts`) and other
 * fetch-based hosts. The endpoint is stateless; state lives in a libSQL /
 * Turso primary reached over HTTP (`@libsql/client/web`), so it scales out.
 *
 * Configuration, read with Hono's `env(c)` (the Worker's bindings on
 * Workers, the process environment elsewhere): `LIBSQL_URL` (required, e.g.
 * `libsql://my-db.turso.io`) and `LIBSQL_AUTH_TOKEN`. It serves the example
 * schema; copy this file and import your own.
 *
 * @module
 */

import { createClient } from "@libsql/client/web";
import { type Context, Hono } from "hono";
import { env } from "hono/adapter";
import { schema } from "../examples/schema.ts";
import { libsqlAdapter } from "../src/internal.ts";
import { createSyncServer, fail } from "./app.ts";
import { openServerDatabase } from "./database.ts";

// What the edge entry reads from its environment.
type Settings = {
  LIBSQL_URL?: string;
  LIBSQL_AUTH_TOKEN?: string;
};

// The endpoint, built on the first request of an isolate.
let app: Promise<{ fetch: (request: Request) => Response | Promise<Response> }> | undefined;

async function build(settings: Settings) {
  const url = settings.LIBSQL_URL;
  if (url === undefined) throw new Error("Set LIBSQL_URL to the libSQL database to serve");
  const database = await openServerDatabase({
    adapter: libsqlAdapter(createClient({ url, authToken: settings.LIBSQL_AUTH_TOKEN })),
    schema,
  });
  return createSyncServer({ database });
}

// The bindings passed to `fetch` (Workers) over the runtime's environment
// (Hono's `env`: Deno, Bun, Node), which may be unreadable without permission.
function settingsOf(c: Context<{ Bindings: Settings }>): Settings {
  let runtime: Settings = {};
  try {
    runtime = env<Settings>(c);
  } catch {
    // No permission to read the environment: the bindings alone decide.
  }
  return { ...runtime, ...c.env };
}

// Every request goes to the endpoint; one that cannot be built is answered
// `misconfigured`, and the next request tries again.
const entry = new Hono<{ Bindings: Settings }>();
entry.all("*", async (c: Context<{ Bindings: Settings }>) => {
  try {
    app ??= build(settingsOf(c)).catch((error) => {
      app = undefined;
      throw error;
    });
    return await (await app).fetch(c.req.raw);
  } catch (error) {
    console.error(error);
    return fail(c, "misconfigured", `The sync endpoint cannot start: ${(error as Error).message}`);
  }
});

/** The edge entry: one app per isolate, built on the first request. */
const edge: { fetch(request: Request, env?: Record<string, unknown>): Promise<Response> } = {
  fetch: async (request, env) => await entry.fetch(request, env),
};

export default edge;
