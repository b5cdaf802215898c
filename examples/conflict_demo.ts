/**
 * A sync server and two clients in one process, over real HTTP on 127.0.0.1.
 * Alice goes offline and edits; Bob edits the same task and deletes another;
 * both sync; the conflict is resolved by HLC and both replicas end equal to
 * the server.
 *
 *   npm run demo:conflict
 *   deno run -A examples/conflict_demo.ts
 *   bun examples/conflict_demo.ts
 *
 * @module
 */

import { createClient } from "@libsql/client";
import { type Database, ServerSyncManager, type SyncStatus } from "../mod.ts";
import { createHttpSync } from "../http.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { openDatabase } from "../src/database.ts";
import { createSyncServer, openServerDatabase } from "../server/mod.ts";
import { serve } from "../server/serve.ts";
import { schema } from "./schema.ts";

type AppDatabase = Database<typeof schema.tables>;

const memory = () => libsqlAdapter(createClient({ url: ":memory:" }));
const log = (who: string, text: string) => console.log(`${who.padEnd(7)} ${text}`);
const tasksOf = async (db: AppDatabase) =>
  (await db.all("tasks")).map((t) => `${t.title}${t.done ? " ✓" : ""}`).join(" | ");

// The server: the same schema and merge code, on libSQL, behind Hono.
const serverDatabase = await openServerDatabase({ adapter: memory(), schema });
const server = await serve(createSyncServer({ database: serverDatabase }).fetch);
log("server", `listening on ${server.url}`);

// Two clients. Alice's network can be switched off.
let aliceOnline = true;
const aliceFetch: typeof fetch = (input, init) =>
  aliceOnline ? fetch(input, init) : Promise.reject(new TypeError("network is down"));

async function client(name: string, fetchImpl: typeof fetch = fetch) {
  const database = await openDatabase({ adapter: memory(), schema, nodeId: name });
  const http = createHttpSync({ url: server.url, fetch: fetchImpl });
  const manager = new ServerSyncManager({
    database,
    ...http,
    onSend: async (changes, db) => {
      const results = await http.onSend(changes, db);
      const verdicts = results.map((r) => r.status).join(", ");
      log(name, `pushed ${changes.length} change${changes.length === 1 ? "" : "s"}: ${verdicts}`);
      return results;
    },
  });
  let last = "";
  manager.addEventListener("status", (event) => {
    const { state, pending } = (event as CustomEvent<SyncStatus>).detail;
    const line = `${state}, ${pending} change${pending === 1 ? "" : "s"} waiting`;
    if (line !== last && state !== "syncing") log(name, `status: ${line}`);
    last = line;
  });
  return { database, manager };
}

const alice = await client("alice", aliceFetch);
const bob = await client("bob");

try {
  log("alice", "creates three tasks and syncs");
  const milk = await alice.database.insert("tasks", { title: "Buy milk" });
  const bread = await alice.database.insert("tasks", { title: "Bake bread" });
  await alice.database.insert("tasks", { title: "Call mum" });
  await alice.manager.syncNow();
  await bob.manager.syncNow();
  log("bob", `pulled: ${await tasksOf(bob.database)}`);

  log("alice", "goes offline and renames the milk task, then ticks it off");
  aliceOnline = false;
  await alice.database.update("tasks", milk.system_id, { title: "Buy oat milk" });
  await alice.database.update("tasks", milk.system_id, { done: 1 });
  await alice.manager.syncNow().catch((error) => log("alice", `sync failed: ${error.message}`));

  await new Promise((resolve) => setTimeout(resolve, 5));
  log("bob", "renames the same task a little later, and deletes the bread task");
  const bobsEdit = await bob.database.update("tasks", milk.system_id, {
    title: "Buy almond milk",
  });
  await bob.database.delete("tasks", bread.system_id);
  await bob.manager.syncNow();

  log("alice", "comes back online and syncs");
  aliceOnline = true;
  await alice.manager.syncNow();
  await bob.manager.syncNow();

  const winner = await alice.database.get("tasks", milk.system_id);
  console.log();
  log("result", `the milk task is "${winner?.title}" at ${winner?.system_version}`);
  log(
    "result",
    `Bob's edit (${bobsEdit.system_version}) is newer than Alice's offline edits, ` +
      "so it wins the whole row (lww: row)",
  );
  log("result", `alice: ${await tasksOf(alice.database)}`);
  log("result", `bob:   ${await tasksOf(bob.database)}`);

  const serverRows = await serverDatabase.pull({ tasks: null }, 1_000);
  const onServer = serverRows.tasks!.rows.filter((r) => !r.deleted).map((r) => r.data.title);
  log("result", `server: ${onServer.join(" | ")}`);
  // Every replica holds the same rows at the same versions as the server.
  const fingerprint = (rows: { id: string; version: string; deleted: boolean }[]) =>
    JSON.stringify(rows.map((r) => `${r.id}@${r.version}${r.deleted ? " deleted" : ""}`).sort());
  const local = async (db: AppDatabase) =>
    fingerprint(
      (await db.all("tasks", { includeDeleted: true })).map((t) => ({
        id: t.system_id,
        version: t.system_version,
        deleted: t.is_deleted === 1,
      })),
    );
  const expected = fingerprint([...serverRows.tasks!.rows]);
  const equal = (await local(alice.database)) === expected &&
    (await local(bob.database)) === expected;
  log("result", equal ? "both replicas are equal to the server ✔" : "replicas differ ✘");
  if (!equal) process.exitCode = 1;
} finally {
  await alice.manager.stop();
  await bob.manager.stop();
  await alice.database.close();
  await bob.database.close();
  await server.close();
  await serverDatabase.close();
}
