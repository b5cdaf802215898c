/**
 * One stateless sync endpoint in a process of its own, for the scale-out
 * tests: it opens the server database over a libSQL URL (a sqld primary),
 * optionally reading pulls from a replica, serves `createSyncServer` on a free
 * loopback port, and prints its URL as the first line on stdout.
 *
 * It stops on SIGTERM or SIGINT, and when its stdin ends: the test that
 * started it holds the other end of that pipe, so an endpoint never outlives
 * its test, however the test process ends.
 *
 * The schema is the end-to-end one (`syncSchema` in `tests/fixtures.ts`).
 *
 * @example
 * ```sh
 * node --import tsx tests/endpoint_process.ts --db http://127.0.0.1:8080 --read http://127.0.0.1:8081
 * deno run -A tests/endpoint_process.ts --db http://127.0.0.1:8080
 * SYNC_DB_URL=http://127.0.0.1:8080 bun tests/endpoint_process.ts
 * ```
 *
 * @module
 */

import process from "node:process";
import { createClient } from "@libsql/client";
import { libsqlAdapter } from "../src/libsql.ts";
import { createSyncServer } from "../server/app.ts";
import { openServerDatabase } from "../server/database.ts";
import { serve } from "../server/serve.ts";
import { syncSchema } from "./fixtures.ts";

/** The value after `--name` in argv, else the environment variable `env`. */
function option(name: string, env: string): string | undefined {
  const args = process.argv;
  const at = args.indexOf(`--${name}`);
  return (at >= 0 ? args[at + 1] : undefined) ?? process.env[env];
}

const url = option("db", "SYNC_DB_URL");
const readUrl = option("read", "SYNC_READ_URL");
if (url === undefined) {
  console.error("Usage: endpoint_process.ts --db <libsql url> [--read <replica url>]");
  process.exit(2);
}

const database = await openServerDatabase({
  adapter: libsqlAdapter(createClient({ url })),
  readAdapter: readUrl === undefined ? undefined : libsqlAdapter(createClient({ url: readUrl })),
  schema: syncSchema,
});
const server = await serve(createSyncServer({ database }).fetch, { hostname: "127.0.0.1" });

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Bounded: a runtime may wait for idle keep-alive connections to close, and the test that
  // stops this process is waiting.
  const timeout = new Promise((resolve) => setTimeout(resolve, 2_000));
  try {
    await Promise.race([server.close().then(() => database.close()), timeout]);
  } finally {
    process.exit(0);
  }
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();

console.log(server.url);
