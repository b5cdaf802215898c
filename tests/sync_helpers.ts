/**
 * End-to-end fixtures: a real sync server on 127.0.0.1 and clients over real HTTP, with the
 * server's database in memory, on a file, or on a real libSQL server (sqld).
 *
 * @example
 * ```ts
 * await withServerDatabase(sqldStore, async (url) => {
 *   const server = await startServer(schema, { url });
 *   const client = await openClient(schema, server);
 *   await client.manager.syncNow();
 *   await server.close();
 * });
 * ```
 *
 * @module
 */

import { spawn } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import type { Context } from "hono";
import { createHttpSync, type HttpSyncOptions } from "../src/http_sync.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { type Database, openDatabase } from "../src/database.ts";
import type { Schema, TableDef } from "../src/schema.ts";
import { ServerSyncManager, type ServerSyncManagerOptions } from "../src/sync_manager.ts";
import { createSyncServer, type SyncServerOptions } from "../server/app.ts";
import { openServerDatabase, type ServerDatabase } from "../server/database.ts";
import { serve } from "../server/serve.ts";
import { tempDir } from "./helpers.ts";
import { skipWithoutSqld, startSqld } from "./sqld.ts";

/** A running sync server. */
export interface TestServer {
  readonly url: string;
  readonly database: ServerDatabase;
  close(): Promise<void>;
}

/** Where a test's server database lives. */
export interface ServerStore {
  /** How test titles name it: `in memory`, `on a file`, `on sqld`. */
  readonly name: string;
  /** Why the tests on it skip (sqld not installed), or false. */
  readonly skip: string | false;
  /** Creates a fresh, empty database: its URL (undefined: `:memory:`), and what removes it. */
  open(): Promise<{ readonly url: string | undefined; close(): Promise<void> }>;
}

/** The server database in memory (`startServer`'s default). */
export const memoryStore: ServerStore = {
  name: "in memory",
  skip: false,
  open: () => Promise.resolve({ url: undefined, close: () => Promise.resolve() }),
};

/** The server database on a file in a temporary directory. */
export const fileStore: ServerStore = {
  name: "on a file",
  skip: false,
  open: () => {
    const dir = tempDir();
    return Promise.resolve({
      url: `file:${join(dir.path, "server.db")}`,
      close: () => Promise.resolve(dir.cleanup()),
    });
  },
};

/** The server database on a sqld of its own, over HTTP; skips where sqld is not installed. */
export const sqldStore: ServerStore = {
  name: "on sqld",
  skip: skipWithoutSqld,
  open: async () => {
    const sqld = await startSqld();
    return { url: sqld.url, close: () => sqld.close() };
  },
};

/** Runs `fn` with the URL of a fresh database from `store`, removing the database after. */
export async function withServerDatabase<T>(
  store: ServerStore,
  fn: (url: string | undefined) => Promise<T>,
): Promise<T> {
  const opened = await store.open();
  try {
    return await fn(opened.url);
  } finally {
    await opened.close();
  }
}

/** A libSQL client for a database URL, `:memory:` when there is none. */
function connect(url: string | undefined) {
  return createClient({ url: url ?? ":memory:", timeout: 10_000 });
}

/**
 * Starts a sync server on 127.0.0.1 over a libSQL database (`:memory:` unless `url` is given;
 * pulls read from `readUrl` when given, a replica of `url`).
 */
export async function startServer(
  schema: Schema,
  options: Omit<SyncServerOptions, "database"> & {
    url?: string;
    readUrl?: string;
    now?: () => number;
    watchInterval?: number;
    port?: number;
  } = {},
): Promise<TestServer> {
  const database = await openServerDatabase({
    adapter: libsqlAdapter(connect(options.url)),
    readAdapter: options.readUrl === undefined
      ? undefined
      : libsqlAdapter(connect(options.readUrl)),
    schema,
    now: options.now,
    journalMode: options.url?.startsWith("file:") ? "wal" : undefined,
    watchInterval: options.watchInterval,
  });
  const server = await serve(createSyncServer({ ...options, database }).fetch, {
    port: options.port,
  });
  return {
    url: server.url,
    database,
    close: async () => {
      database.endHeldPulls();
      await server.close();
      await database.close();
    },
  };
}

/** A sync endpoint running in a process of its own (`tests/endpoint_process.ts`). */
export interface EndpointProcess {
  /** Where it listens: `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** Its process id. */
  readonly pid: number;
  /** Stops it (SIGTERM, then SIGKILL after 5 s) and waits for it to exit. Idempotent. */
  close(): Promise<void>;
}

const endpointEntry = fileURLToPath(new URL("./endpoint_process.ts", import.meta.url));
const projectRoot = fileURLToPath(new URL("..", import.meta.url));

/**
 * The command that runs a TypeScript entry on the runtime running this test: `deno run -A`
 * under Deno, `bun` under Bun, `node --import tsx` under Node.
 */
export function runtimeCommand(entry: string): { command: string; args: string[] } {
  const { Deno } = globalThis as { Deno?: { execPath(): string } };
  if (Deno !== undefined) {
    const config = join(projectRoot, "deno.json");
    return { command: Deno.execPath(), args: ["run", "-A", "--config", config, entry] };
  }
  if ("Bun" in globalThis) return { command: process.execPath, args: [entry] };
  return { command: process.execPath, args: ["--import", "tsx", entry] };
}

/**
 * Starts `tests/endpoint_process.ts` over the database at `url` (pulls from `readUrl` when
 * given) with the runtime running this test, and resolves once it printed its URL (bounded:
 * rejects after 30 s, with its output). The endpoint exits on its own when this process ends:
 * it watches the stdin pipe this process holds.
 */
export async function startEndpointProcess(
  url: string,
  options: { readUrl?: string } = {},
): Promise<EndpointProcess> {
  const { command, args } = runtimeCommand(endpointEntry);
  args.push("--db", url);
  if (options.readUrl !== undefined) args.push("--read", options.readUrl);
  // From the project's root, where `--import tsx` and the import map resolve.
  const child = spawn(command, args, { cwd: projectRoot, stdio: ["pipe", "pipe", "pipe"] });
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", () => {
      exited = true;
      resolve();
    });
    child.once("error", () => {
      exited = true;
      resolve();
    });
  });
  let output = "";
  child.stderr!.on("data", (chunk) => {
    output = (output + String(chunk)).slice(-8_192);
  });
  const lines = createInterface({ input: child.stdout! });
  let killed = false;
  const kill = (signal: "SIGTERM" | "SIGKILL") => {
    // process.kill, not child.kill: Deno's refuses a second signal, so it cannot escalate.
    if (exited || child.pid === undefined || killed) return;
    if (signal === "SIGKILL") killed = true;
    try {
      process.kill(child.pid, signal);
    } catch {
      // Gone already.
    }
  };
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      kill("SIGTERM");
      const timer = setTimeout(() => kill("SIGKILL"), 5_000);
      await exit;
      clearTimeout(timer);
      lines.close();
      child.stdin?.destroy();
    })();
    return closing;
  };
  try {
    const endpointUrl = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`The endpoint did not start within 30 s:\n${output}`)),
        30_000,
      );
      lines.once("line", (line) => {
        clearTimeout(timer);
        resolve(line.trim());
      });
      exit.then(() => {
        clearTimeout(timer);
        reject(new Error(`The endpoint exited before it listened:\n${output}`));
      });
    });
    return { url: endpointUrl, pid: child.pid!, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Bearer tokens → principals, for `authorize`. */
export function bearer(tokens: Record<string, string>): (c: Context) => { id: string } | null {
  return (c) => {
    const header = c.req.header("authorization") ?? "";
    const token = header.replace(/^Bearer /, "");
    const id = Object.hasOwn(tokens, token) ? tokens[token] : undefined;
    return id === undefined ? null : { id };
  };
}

/** A client replica on `:memory:` with a manager over HTTP. */
export interface TestClient<T extends Record<string, TableDef>> {
  readonly db: Database<T>;
  readonly manager: ServerSyncManager<T>;
  /** Switches the client's network off and on. */
  online: boolean;
}

/** Opens a client replica synced with `server`. */
export async function openClient<T extends Record<string, TableDef>>(
  schema: Schema<T>,
  server: { url: string },
  options: {
    nodeId?: string;
    http?: Omit<HttpSyncOptions, "url">;
    manager?: Partial<ServerSyncManagerOptions<T>>;
  } = {},
): Promise<TestClient<T>> {
  const db = await openDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema,
    nodeId: options.nodeId,
  });
  const client = { online: true } as TestClient<T>;
  const network: typeof fetch = (input, init) =>
    client.online ? fetch(input, init) : Promise.reject(new TypeError("network is down"));
  const http = createHttpSync({ url: server.url, fetch: network, ...options.http });
  const manager = new ServerSyncManager<T>({
    database: db,
    ...http, // as an app would: two pushes in flight
    retryDelay: 20,
    maxRetryDelay: 200,
    ...options.manager,
  });
  return Object.assign(client, { db, manager });
}

/** POSTs JSON (or a raw string) to the server. */
export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}
