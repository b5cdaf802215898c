/**
 * A sync server for `push_load.ts`, in its own process: `createSyncServer`
 * over `openServerDatabase`, served on 127.0.0.1, from the code under
 * `--root` (this checkout by default, or an older checkout for a "before"
 * figure), on `--db` (a `file:` path, WAL, or a libSQL server URL).
 *
 * ```sh
 * node --import tsx bench/push_server.ts --db /tmp/server.db [--root /path/to/checkout]
 * ```
 *
 * Prints one line, `{ "url": … }`, once it listens; exits when stdin ends.
 *
 * @module
 */

import { createInterface } from "node:readline";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { createClient } from "@libsql/client";

function option(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? undefined : process.argv[at + 1];
}

const root = option("root") ?? new URL("..", import.meta.url).pathname;
const db = option("db");
if (db === undefined) throw new Error("Give --db (a file path or an http:// URL)");
const load = (path: string) => import(pathToFileURL(`${root}/${path}`).href);

const { createSyncServer, openServerDatabase } = await load("server/mod.ts");
const { serve } = await load("server/serve.ts");
const { libsqlAdapter } = await load("src/libsql.ts");
const { schema } = await load("bench/fixtures.ts");

const remote = /^(https?|libsql|wss?):/.test(db);
const database = await openServerDatabase({
  adapter: libsqlAdapter(createClient({ url: remote ? db : `file:${db}` })),
  schema,
  ...(remote ? {} : { journalMode: "wal" }),
});
const server = await serve(createSyncServer({ database }).fetch, { port: 0 });
console.log(JSON.stringify({ url: server.url }));

// Stops when the benchmark closes stdin (or exits).
for await (const _ of createInterface({ input: process.stdin })) {
  // Commands are not needed: the end of stdin is the signal.
}
// Held pulls are answered first, or the server would wait for them (older
// checkouts, which hold none, lack the method).
database.endHeldPulls?.();
await server.close();
await database.close();
process.exit(0);
