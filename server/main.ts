/**
 * Runs the sync server: Deno.serve on Deno, Bun.serve on Bun,
 * @hono/node-server on Node.
 *
 * ```sh
 * npm start                                         # Node, embedded file ./data/sync.db
 * node --import tsx server/main.ts --port 8787
 * deno run -A server/main.ts --db file:data/sync.db
 * bun server/main.ts --schema ./my_schema.ts --host 0.0.0.0
 * ```
 *
 * Flags (or environment): `--db` (`SYNC_DB`; a libSQL URL or a file path;
 * default `file:data/sync.db`), `--host` (`SYNC_HOST`, default 127.0.0.1),
 * `--port` (`SYNC_PORT`, default 8787), `--schema` (`SYNC_SCHEMA`, a module
 * exporting `schema`; default the example tasks schema), `--auth-token`
 * (`SYNC_AUTH_TOKEN`, for a remote libSQL URL), `--tokens` (`SYNC_TOKENS`,
 * `secret=principal,…`: bearer tokens; a missing, malformed or unknown
 * `Authorization: Bearer <token>` is a 401 before the body is read; the
 * principal is matched against scope columns). Without tokens every request
 * is served.
 *
 * Logs one line per request (Hono's `logger`). On SIGINT or SIGTERM it stops
 * accepting connections, answers the requests in flight — every acknowledged
 * push is already committed — closes the database and exits; under
 * `npm start` it does the same when npm is stopped. A port already in use is
 * one line on stderr and exit code 1.
 *
 * @module
 */

import { createClient } from "@libsql/client";
import { type Context, Hono } from "hono";
import { logger } from "hono/logger";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { libsqlAdapter, type Schema } from "../src/internal.ts";
import { createSyncServer, notFound } from "./app.ts";
import { openServerDatabase } from "./database.ts";
import { type RunningServer, serve } from "./serve.ts";

const { values: flags } = parseArgs({
  args: process.argv.slice(2),
  options: {
    db: { type: "string" },
    host: { type: "string" },
    port: { type: "string" },
    schema: { type: "string" },
    "auth-token": { type: "string" },
    tokens: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (flags.help) {
  console.log(
    "Usage: main.ts [--db file:data/sync.db] [--host 127.0.0.1] [--port 8787] [--schema ./schema.ts]",
  );
  process.exit(0);
}

const dbUrl = toLibsqlUrl(flags.db ?? process.env.SYNC_DB ?? "file:data/sync.db");
const host = flags.host ?? process.env.SYNC_HOST ?? "127.0.0.1";
const port = Number(flags.port ?? process.env.SYNC_PORT ?? 8787);
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`Invalid port ${flags.port ?? process.env.SYNC_PORT}`);
  process.exit(2);
}
const schema = await loadSchema(flags.schema ?? process.env.SYNC_SCHEMA);

if (dbUrl.startsWith("file:")) mkdirSync(dirname(resolve(dbUrl.slice(5))), { recursive: true });
const database = await openServerDatabase({
  adapter: libsqlAdapter(
    createClient({
      url: dbUrl,
      authToken: flags["auth-token"] ?? process.env.SYNC_AUTH_TOKEN,
      // Several server processes may share one file: wait for the writer lock.
      timeout: 5_000,
    }),
  ),
  schema,
  journalMode: dbUrl.startsWith("file:") ? "wal" : undefined,
});

const app = new Hono();
app.use(logger(printRequest));
const tokens = parseTokens(flags.tokens ?? process.env.SYNC_TOKENS);
// `Authorization: Bearer <token>` and nothing else; anything missing,
// malformed or unknown is the same 401 (Hono's bearerAuth answers a
// malformed header with 400, which the endpoint does not document).
const authorize = tokens.size === 0 ? undefined : (c: Context) => {
  const match = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/.exec(c.req.header("authorization") ?? "");
  const id = match === null ? undefined : tokens.get(match[1]!);
  return id === undefined ? null : { id };
};
app.notFound(notFound);
app.route("/", createSyncServer({ database, authorize }));

const server = await listen();
const runtime = server.runtime;
console.log(
  `declarative-sync server on ${server.url} (${runtime}), database ${dbUrl}, schema ${schema.hash}`,
);
console.log(`POST ${server.url}/push · POST ${server.url}/pull · GET ${server.url}/health`);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: finishing requests in flight, then closing the database`);
  await server.close();
  await database.close();
  console.log("stopped");
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
stopWithNpm();

// Serves the app; a port taken by another process is one line and exit 1.
async function listen(): Promise<RunningServer> {
  try {
    return await serve(app.fetch, { hostname: host, port });
  } catch (error) {
    if (!isAddressInUse(error)) throw error;
    console.error(`Port ${port} on ${host} is already in use: stop what serves it, or pass --port`);
    await database.close();
    process.exit(1);
  }
}

// EADDRINUSE on Node and Bun, Deno's AddrInUse.
function isAddressInUse(error: unknown): boolean {
  const { code, name, message } = (error ?? {}) as Record<string, unknown>;
  return code === "EADDRINUSE" || name === "AddrInUse" ||
    /address already in use/i.test(String(message));
}

// Under `npm start` a shell stands between npm and this process. When npm
// is stopped (SIGTERM), it ends that shell, not this process, which would
// go on serving, orphaned: so while npm runs the server, it stops once its
// parent is gone.
function stopWithNpm(): void {
  if (process.env.npm_lifecycle_event === undefined) return;
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) void shutdown("npm exited");
  }, 500);
  (watch as { unref?: () => void }).unref?.();
}

// Hono's logger prints a line as a request comes in (`<-- POST /push`) and
// one as it is answered (`--> POST /push 200 12ms`, the status colored
// unless NO_COLOR is set). The answer's line says it all: it alone is
// printed, without colors (log files and the load benchmark read it), after
// the time, to stderr for a 5xx and as a warning for a 4xx:
// `2026-01-01T00:00:00.000Z POST /push 200 12ms`.
function printRequest(line: string): void {
  if (!line.startsWith("-->")) return;
  const text = `${new Date().toISOString()} ${withoutColors(line.slice(4))}`;
  const status = Number(text.split(" ")[3]);
  if (status >= 500) console.error(text);
  else if (status >= 400) console.warn(text);
  else console.log(text);
}

function withoutColors(text: string): string {
  // deno-lint-ignore no-control-regex -- the escape is what is removed
  return text.replace(/\x1b\[\d+m/g, "");
}

function parseTokens(value: string | undefined): Map<string, string> {
  const tokens = new Map<string, string>();
  for (const pair of (value ?? "").split(",").filter(Boolean)) {
    const [token, principal] = pair.split("=");
    if (!token || !principal) {
      console.error(`Invalid token ${JSON.stringify(pair)}: use secret=principal`);
      process.exit(2);
    }
    tokens.set(token, principal);
  }
  return tokens;
}

function toLibsqlUrl(value: string): string {
  return /^[a-z]+:/i.test(value) ? value : `file:${value}`;
}

async function loadSchema(path: string | undefined): Promise<Schema> {
  const module = path === undefined
    ? await import("../examples/schema.ts")
    : await import(pathToFileURL(resolve(path)).href);
  const found = (module.schema ?? module.default) as Schema | undefined;
  if (found === undefined || typeof found !== "object" || !("tables" in found)) {
    console.error(`${path} exports no schema (export const schema = defineSchema(...))`);
    process.exit(2);
  }
  return found;
}
