// A user's app against the installed npm package, the same file run by plain
// `node`, `bun` and `deno`: it imports every entry the package exports, starts
// a sync server from `@declarative/sync/server` + `@declarative/sync/serve` on
// 127.0.0.1 (port 0) — or, given a URL, uses the server running there — and
// syncs two clients (`@declarative/sync`, `/libsql`, `/http`) through it until
// they hold the same rows. Prints one JSON line; exits 1 on any failure.
//
//   node sync_two_clients.mjs [http://127.0.0.1:PORT]
import { readFileSync } from "node:fs";
import process from "node:process";
import { createClient } from "@libsql/client";
import { openDatabase, ServerSyncManager } from "@declarative/sync";
import { libsqlAdapter } from "@declarative/sync/libsql";
import { createHttpSync } from "@declarative/sync/http";
import { createSyncServer, openServerDatabase } from "@declarative/sync/server";
import { serve } from "@declarative/sync/serve";
import { schema } from "./schema.mjs";

const runtime = globalThis.Deno ? "deno" : globalThis.Bun ? "bun" : "node";

// Every subpath of the installed package loads on this runtime.
const manifest = JSON.parse(
  readFileSync(new URL("./node_modules/@declarative/sync/package.json", import.meta.url), "utf8"),
);
const entries = {};
for (const subpath of Object.keys(manifest.exports)) {
  if (subpath === "./package.json") continue;
  const module = await import(`@declarative/sync${subpath.slice(1)}`);
  entries[subpath] = Object.keys(module).length;
  if (entries[subpath] === 0) {
    throw new Error(`@declarative/sync${subpath.slice(1)} exports nothing`);
  }
}

const given = process.argv[2];
const serverDb = given ? undefined : await openServerDatabase({
  adapter: libsqlAdapter(createClient({ url: ":memory:" })),
  schema,
});
const server = serverDb
  ? await serve(createSyncServer({ database: serverDb }).fetch, { hostname: "127.0.0.1", port: 0 })
  : undefined;
const url = given ?? server.url;

async function openClient(nodeId) {
  const db = await openDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema,
    nodeId,
  });
  const manager = new ServerSyncManager({
    database: db,
    syncInterval: 60_000,
    ...createHttpSync({ url }),
  });
  return { db, manager };
}

const alice = await openClient("alice");
const bob = await openClient("bob");
try {
  const milk = await alice.db.insert("tasks", { title: "Buy milk" });
  await bob.db.insert("tasks", { title: "Walk the dog" });
  const note = await alice.db.insert("notes", { body: "shopping" });
  await alice.manager.syncNow();
  await bob.manager.syncNow();
  // Bob edits what Alice wrote; a column table keeps both sides' columns.
  await bob.db.update("tasks", milk.system_id, { done: 1 });
  await bob.db.update("notes", note.system_id, { color: "yellow" });
  await alice.db.update("notes", note.system_id, { body: "shopping list" });
  await bob.manager.syncNow();
  await alice.manager.syncNow();
  await bob.manager.syncNow();

  const rows = async ({ db }) => ({
    tasks: (await db.all("tasks")).map((r) => [r.system_id, r.title, r.done]).sort(),
    notes: (await db.all("notes")).map((r) => [r.system_id, r.body, r.color]).sort(),
  });
  const [a, b] = [await rows(alice), await rows(bob)];
  const pending = (await alice.db.countDirtyRows()) + (await bob.db.countDirtyRows());
  const converged = JSON.stringify(a) === JSON.stringify(b) && a.tasks.length === 2 &&
    a.tasks.some(([, title, done]) => title === "Buy milk" && done === 1) &&
    a.notes[0]?.[1] === "shopping list" && a.notes[0]?.[2] === "yellow" && pending === 0;
  console.log(JSON.stringify({ runtime, url, entries, converged, pending, alice: a, bob: b }));
  if (!converged) process.exitCode = 1;
} finally {
  for (const client of [alice, bob]) {
    await client.manager.stop();
    await client.db.close();
  }
  await server?.close();
  await serverDb?.close();
}
