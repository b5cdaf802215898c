/** End-to-end fixtures: a real sync server on 127.0.0.1 and clients over real HTTP. */

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

/** A running sync server. */
export interface TestServer {
  readonly url: string;
  readonly database: ServerDatabase;
  close(): Promise<void>;
}

/** Starts a sync server on 127.0.0.1 over a libSQL database (`:memory:` unless `url` is given). */
export async function startServer(
  schema: Schema,
  options: Omit<SyncServerOptions, "database"> & { url?: string; now?: () => number } = {},
): Promise<TestServer> {
  const database = await openServerDatabase({
    adapter: libsqlAdapter(createClient({ url: options.url ?? ":memory:", timeout: 10_000 })),
    schema,
    now: options.now,
    journalMode: options.url?.startsWith("file:") ? "wal" : undefined,
  });
  const server = await serve(createSyncServer({ ...options, database }).fetch);
  return {
    url: server.url,
    database,
    close: async () => {
      await server.close();
      await database.close();
    },
  };
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
