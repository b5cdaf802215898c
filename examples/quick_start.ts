/**
 * The README's quick start, runnable: start the server first (`npm start`),
 * then `node --import tsx examples/quick_start.ts` (or deno run -A / bun).
 *
 * @module
 */

import { createClient } from "@libsql/client";
import { openDatabase, ServerSyncManager } from "../mod.ts";
import { createHttpSync } from "../http.ts";
import { libsqlAdapter } from "../src/libsql.ts";
// Client and server must declare the same schema (409 otherwise): `npm start`
// serves this one by default.
import { schema } from "./schema.ts";

const db = await openDatabase({
  adapter: libsqlAdapter(createClient({ url: ":memory:" })),
  schema,
});
const task = await db.insert("tasks", { title: "Buy milk" });
await db.update("tasks", task.system_id, { done: 1 });

const manager = new ServerSyncManager({
  database: db,
  ...createHttpSync({ url: "http://127.0.0.1:8787" }),
});
try {
  await manager.syncNow();
  console.log(manager.status);
} finally {
  await manager.stop();
  await db.close();
}
