/**
 * Runs the sync server: Deno.serve on Deno, Bun.serve on Bun,
 * @hono/node-server on Node. This is the one code path behind every way of
 * starting it: `npm start` and `deno run -A server/main.ts` run this file, and
 * the npm package's `declarative-sync serve` (`server/cli.ts`) calls
 * {@linkcode runServer}.
 *
 * ```sh
 * npm start                                         # Node, embedded file ./data/sync.db
 * node --import tsx server/main.ts --port 8787
 * deno run -A server/main.ts --db file:data/sync.db
 * bun server/main.ts --schema ./my_schema.ts --host 0.0.0.0
 * npx declarative-sync serve --schema ./schema.mjs  # from the npm package, plain Node
 * ```
 *
 * Flags (or environment): `--db` (`SYNC_DB`; a libSQL URL or a file path;
 * default `file:data/sync.db`), `--host` (`SYNC_HOST`, default 127.0.0.1),
 * `--port` (`SYNC_PORT`, default 8787), `--schema` (`SYNC_SCHEMA`, a module
 * exporting `schema`; default the example tasks schema; Node 20 imports only
 * JavaScript, so there it is a `.js`/`.mjs` module unless a loader such as tsx
 * is in use), `--auth-token` (`SYNC_AUTH_TOKEN`, for a remote libSQL URL),
 * `--tokens` (`SYNC_TOKENS`, `secret=principal,…`: bearer tokens; a missing,
 * malformed or unknown `Authorization: Bearer <token>` is a 401 before the
 * body is read; the principal is matched against scope columns). Without
 * tokens every request is served. `--max-pull-wait` (`SYNC_MAX_PULL_WAIT`,
 * ms, default 30,000) bounds how long a pull with nothing new is held.
 *
 * Logs one line per request (Hono's `logger`). On SIGINT or SIGTERM it stops
 * accepting connections, answers the requests in flight — every acknowledged
 * push is already committed — closes the database and exits; under
 * `npm start` or `npx` it does the same when npm is stopped. A port already in
 * use is one line on stderr and exit code 1; a bad flag or schema module is
 * one line and exit code 2.
 *
 * @module
 */

import { createClient } from "@libsql/client";
import { type Context, Hono } from "hono";
import { logger } from "hono/logger";
import { existsSync, mkdirSync, realpathSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { libsqlAdapter, type Schema } from "../src/internal.ts";
import { createSyncServer, notFound } from "./app.ts";
import { openServerDatabase, type ServerDatabase } from "./database.ts";
import { type RunningServer, serve } from "./serve.ts";

/**
 * The usage text of the server's command line.
 *
 * @param program How the server was started, for the first line
 * (`declarative-sync serve`, `server/main.ts`).
 * @returns The text `--help` prints.
 * @example
 * ```ts
 * console.log(usage("declarative-sync serve"));
 * ```
 */
export function usage(program: string): string {
  return `Usage: ${program} [options]

Serves the declarative-sync endpoint (POST /push, POST /pull, GET /health)
on a libSQL database, with Deno.serve, Bun.serve or @hono/node-server.

Options (environment variable in parentheses):
  --db URL|PATH       libSQL URL or file path (SYNC_DB; default file:data/sync.db)
  --host HOST         interface to listen on (SYNC_HOST; default 127.0.0.1)
  --port PORT         port, 0 for any free one (SYNC_PORT; default 8787)
  --schema MODULE     module exporting \`schema\` (SYNC_SCHEMA; default the example
                      tasks schema). Deno and Bun import .ts; Node 20 imports
                      only JavaScript: give it a .js or .mjs module (or run
                      node --import tsx)
  --auth-token TOKEN  auth token of a remote libSQL URL (SYNC_AUTH_TOKEN)
  --tokens LIST       bearer tokens, secret=principal,... (SYNC_TOKENS); without
                      them every request is served
  --max-pull-wait MS  longest a pull with nothing new is held (SYNC_MAX_PULL_WAIT;
                      default 30000; keep it under the idle timeout of any
                      proxy in front: 0 answers every pull at once)
  -h, --help          print this help

Stops on SIGINT or SIGTERM after answering the requests in flight.`;
}

/**
 * Starts the sync server from command-line flags and the environment, and
 * keeps it running until SIGINT or SIGTERM (then the process exits 0). A
 * bad flag or schema module exits 2, a port in use exits 1: each with one
 * line on stderr.
 *
 * @param args The flags, without the runtime and script (`--db x.db --port 0`).
 * @param program How the server was started, for `--help`.
 * @returns Once the server listens.
 * @example
 * ```ts
 * await runServer(["--db", "data/sync.db", "--port", "8787"]);
 * ```
 */
export async function runServer(
  args: readonly string[],
  program = "server/main.ts",
): Promise<void> {
  const flags = parseFlags(args, program);
  if (flags.help) {
    console.log(usage(program));
    process.exit(0);
  }

  const dbUrl = toLibsqlUrl(flags.db ?? process.env.SYNC_DB ?? "file:data/sync.db");
  const host = flags.host ?? process.env.SYNC_HOST ?? "127.0.0.1";
  const port = parsePort(flags.port ?? process.env.SYNC_PORT ?? "8787");
  const tokens = parseTokens(flags.tokens ?? process.env.SYNC_TOKENS);
  const maxPullWait = parseMaxPullWait(flags["max-pull-wait"] ?? process.env.SYNC_MAX_PULL_WAIT);
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
  // `Authorization: Bearer <token>` and nothing else; anything missing,
  // malformed or unknown is the same 401 (Hono's bearerAuth answers a
  // malformed header with 400, which the endpoint does not document).
  const authorize = tokens.size === 0 ? undefined : (c: Context) => {
    const match = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/.exec(c.req.header("authorization") ?? "");
    const id = match === null ? undefined : tokens.get(match[1]!);
    return id === undefined ? null : { id };
  };
  app.notFound(notFound);
  app.route("/", createSyncServer({ database, authorize, limits: { maxPullWait } }));

  let server: RunningServer;
  try {
    server = await serve(app.fetch, { hostname: host, port });
  } catch (error) {
    if (!isAddressInUse(error)) throw error;
    console.error(`Port ${port} on ${host} is already in use: stop what serves it, or pass --port`);
    await database.close();
    process.exit(1);
  }
  console.log(
    `declarative-sync server on ${server.url} (${server.runtime}), database ${dbUrl}, schema ${schema.hash}`,
  );
  console.log(
    `POST ${server.url}/push · POST ${server.url}/pull · GET ${server.url}/health · GET ${server.url}/schema`,
  );

  stopOnSignals(server, database);
}

// On SIGINT or SIGTERM (or when npm is stopped): stop accepting, answer the
// requests in flight, close the database, exit 0.
function stopOnSignals(server: RunningServer, database: ServerDatabase): void {
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: finishing requests in flight, then closing the database`);
    // Held pulls are answered now, or the server would wait for them.
    database.endHeldPulls();
    await server.close();
    await database.close();
    console.log("stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  stopWithNpm(() => void shutdown("npm exited"));
}

// A port from 0 to 65535; anything else is one line and exit 2.
function parsePort(text: string): number {
  const port = Number(text);
  if (text.trim() === "" || !Number.isInteger(port) || port < 0 || port > 65_535) {
    console.error(`Invalid port ${JSON.stringify(text)}: use a number from 0 to 65535`);
    process.exit(2);
  }
  return port;
}

// Milliseconds, 0 or more (undefined: the endpoint's default); anything else is one line and exit 2.
function parseMaxPullWait(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(ms) || ms < 0) {
    console.error(`Invalid --max-pull-wait ${JSON.stringify(text)}: use milliseconds, 0 or more`);
    process.exit(2);
  }
  return ms;
}

type Flags = {
  db?: string;
  host?: string;
  port?: string;
  schema?: string;
  "auth-token"?: string;
  tokens?: string;
  "max-pull-wait"?: string;
  help?: boolean;
};

// An unknown flag or a stray argument is one line and exit 2, not a stack.
function parseFlags(args: readonly string[], program: string): Flags {
  try {
    return parseArgs({
      args: [...args],
      options: {
        db: { type: "string" },
        host: { type: "string" },
        port: { type: "string" },
        schema: { type: "string" },
        "auth-token": { type: "string" },
        tokens: { type: "string" },
        "max-pull-wait": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    console.error(`${(error as Error).message} (see ${program} --help)`);
    process.exit(2);
  }
}

// EADDRINUSE on Node and Bun, Deno's AddrInUse.
function isAddressInUse(error: unknown): boolean {
  const { code, name, message } = (error ?? {}) as Record<string, unknown>;
  return code === "EADDRINUSE" || name === "AddrInUse" ||
    /address already in use/i.test(String(message));
}

// Under `npm start` (and `npx`) a shell stands between npm and this process.
// When npm is stopped (SIGTERM), it ends that shell, not this process, which
// would go on serving, orphaned: so while npm runs the server, it stops once
// its parent is gone.
function stopWithNpm(stop: () => void): void {
  if (process.env.npm_lifecycle_event === undefined) return;
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) stop();
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

// The example schema is the default (`../examples/schema.ts`, shipped
// compiled in the npm package); `--schema` is a path from the working
// directory. Node 20 without a loader refuses a `.ts` module with
// ERR_UNKNOWN_FILE_EXTENSION: the message says what to give it instead.
async function loadSchema(path: string | undefined): Promise<Schema> {
  let module: { schema?: unknown; default?: unknown };
  if (path === undefined) module = await import("../examples/schema.ts");
  else {
    const file = resolve(path);
    if (!existsSync(file)) {
      console.error(`Schema module ${path} not found (looked for ${file})`);
      process.exit(2);
    }
    try {
      module = await import(pathToFileURL(file).href);
    } catch (error) {
      const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
      if (code === "ERR_UNKNOWN_FILE_EXTENSION" && /^\.[cm]?tsx?$/.test(extname(file))) {
        console.error(
          `Cannot load the schema module ${path}: Node ${process.version} imports TypeScript ` +
            "only through a loader. Give --schema a .js or .mjs module, or run under " +
            "node --import tsx, Deno or Bun",
        );
      } else {
        console.error(`Cannot load the schema module ${path}: ${String(message ?? error)}`);
      }
      process.exit(2);
    }
  }
  const found = (module.schema ?? module.default) as Schema | undefined;
  if (found === undefined || typeof found !== "object" || !("tables" in found)) {
    console.error(
      `${path ?? "The example schema"} exports no schema (export const schema = defineSchema(...))`,
    );
    process.exit(2);
  }
  return found;
}

// True when this file is the program being run (`npm start`, `deno run
// server/main.ts`), false when `server/cli.ts` imports it. Deno, Bun and
// newer Node say so in `import.meta.main`; Node 20 does not, so the script
// path it was started with is compared with this module's, symlinks resolved.
function isProgram(): boolean {
  const main = (import.meta as { main?: boolean }).main;
  if (typeof main === "boolean") return main;
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isProgram()) await runServer(process.argv.slice(2));
