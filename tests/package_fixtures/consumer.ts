// A TypeScript user's code against the installed package, type-checked with
// `tsc --noEmit` (moduleResolution nodenext) and `deno check`: every entry's
// `types` resolve, and they are real types, not `any`: each line marked as an
// expected error is one only if the entry's declarations were found, and an
// expected error that does not occur fails the check.
import { createClient } from "@libsql/client";
import {
  defineSchema,
  integer,
  openDatabase,
  ServerSyncManager,
  type SyncStatus,
  table,
  text,
} from "@declarative/sync";
import { libsqlAdapter } from "@declarative/sync/libsql";
import { createHttpSync } from "@declarative/sync/http";
import { createSyncServer, openServerDatabase } from "@declarative/sync/server";
import { type RunningServer, serve } from "@declarative/sync/serve";
import { createEdgeServer } from "@declarative/sync/edge";

const schema = defineSchema({
  tasks: table({ title: text().notNull(), done: integer().notNull().default(0) }, {
    withSystemColumns: true,
  }),
});

export async function run(): Promise<number> {
  const database = await openServerDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema,
  });
  const server: RunningServer = await serve(createSyncServer({ database }).fetch, { port: 0 });
  // @ts-expect-error a port is a number
  await serve(createSyncServer({ database }).fetch, { port: "0" });
  // @ts-expect-error the server needs its database
  createSyncServer({});
  // @ts-expect-error an adapter wraps a libSQL client
  libsqlAdapter("file:x.db");
  // @ts-expect-error the edge endpoint needs the schema
  createEdgeServer({ url: "http://127.0.0.1:8080" });
  const db = await openDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema,
  });
  const task = await db.insert("tasks", { title: "typed" });
  const title: string = task.title;
  // @ts-expect-error a column the schema does not declare
  await db.insert("tasks", { titel: "typo" });
  // @ts-expect-error `done` is a number
  await db.update("tasks", task.system_id, { done: "yes" });
  const manager = new ServerSyncManager({ database: db, ...createHttpSync({ url: server.url }) });
  // @ts-expect-error the transport needs the server's URL
  createHttpSync({});
  await manager.syncNow();
  const status: SyncStatus = manager.status;
  await manager.stop();
  await server.close();
  return title.length + status.pending;
}
