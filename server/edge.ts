/**
 * The sync endpoint as an edge module: `export default { fetch }` for
 * Cloudflare Workers, Deno Deploy (`deno serve server/edge.ts`) and other
 * fetch-based hosts. The endpoint is stateless; state lives in a libSQL /
 * Turso primary reached over HTTP (`@libsql/client/web`), so it scales out.
 *
 * Configuration, from the Worker's `env` or the process environment:
 * `LIBSQL_URL` (required, e.g. `libsql://my-db.turso.io`) and
 * `LIBSQL_AUTH_TOKEN`. It serves the example schema; copy this file and import
 * your own.
 *
 * @module
 */

import { createClient } from "@libsql/client/web";
import { schema } from "../examples/schema.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { createSyncServer } from "./app.ts";
import { openServerDatabase } from "./database.ts";

type Env = Record<string, string | undefined>;

let app: Promise<{ fetch: (request: Request) => Response | Promise<Response> }> | undefined;

function setting(env: Env | undefined, name: string): string | undefined {
  const deno = (globalThis as { Deno?: { env: { get(key: string): string | undefined } } }).Deno;
  const node = (globalThis as { process?: { env: Env } }).process;
  return env?.[name] ?? deno?.env.get(name) ?? node?.env[name];
}

async function build(env: Env | undefined) {
  const url = setting(env, "LIBSQL_URL");
  if (url === undefined) throw new Error("Set LIBSQL_URL to the libSQL database to serve");
  const database = await openServerDatabase({
    adapter: libsqlAdapter(createClient({ url, authToken: setting(env, "LIBSQL_AUTH_TOKEN") })),
    schema,
  });
  return createSyncServer({ database });
}

/** The edge entry: one app per isolate, built on the first request. */
const edge: { fetch(request: Request, env?: Env): Promise<Response> } = {
  async fetch(request, env) {
    app ??= build(env).catch((error) => {
      app = undefined;
      throw error;
    });
    try {
      return await (await app).fetch(request);
    } catch (error) {
      console.error(error);
      const message = `The sync endpoint cannot start: ${(error as Error).message}`;
      return Response.json({ error: { code: "misconfigured", message } }, { status: 500 });
    }
  },
};

export default edge;
