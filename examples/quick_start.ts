/**
 * The README's quick start, runnable: start the server first (`npm start`),
 * then `node --import tsx examples/quick_start.ts` (or `deno run -A`, `bun`).
 *
 * It is the README's code with the repository's paths for the package's, and
 * the schema imported from `examples/schema.ts` — the tables the README
 * declares, and the ones `npm start` serves. Against a server started with
 * another `--schema`, `syncNow()` throws a `schema_mismatch` that names the
 * tables and columns that differ. Unlike an app, it stops the manager once
 * synced, so the script ends.
 *
 * @module
 */

import { createClient } from "@libsql/client";
import { openDatabase, ServerSyncManager } from "../mod.ts";
import { createHttpSync } from "../http.ts";
import { libsqlAdapter } from "../src/libsql.ts";
// Client and server declare the same schema: `npm start` serves this one.
import { schema } from "./schema.ts";

const db = await openDatabase({
  adapter: libsqlAdapter(createClient({ url: "file:app.db" })),
  schema,
});
const task = await db.insert("tasks", { title: "Buy milk" }); // a typed row, stamped, in the outbox
await db.update("tasks", task.system_id, { done: 1 });

const manager = new ServerSyncManager({
  database: db,
  ...createHttpSync({ url: "http://127.0.0.1:8787" }),
});
manager.start(); // push the outbox, pull what changed: in the background, with retries
try {
  await manager.syncNow(); // resolves once the writes above are on the server, or throws why not
  console.log(manager.status); // { state: "idle", pending: 0, … }
} finally {
  await manager.stop();
  await db.close();
}
