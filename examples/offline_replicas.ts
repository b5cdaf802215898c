/**
 * Two replicas of the example schema, each on its own embedded libSQL file,
 * edit offline and then exchange their outboxes. It shows the outbox
 * coalescing writes, last-write-wins by HLC on whole rows (tasks) and per
 * column (notes), and both replicas ending equal.
 *
 *   npm run example                          (Node)
 *   deno run -A examples/offline_replicas.ts
 *   bun examples/offline_replicas.ts
 *
 * @module
 */

import { createClient } from "@libsql/client";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Database, type DirtyRow, openDatabase, type ServerChanges } from "../mod.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { schema } from "./schema.ts";

type AppDatabase = Database<typeof schema.tables>;

const dir = mkdtempSync(join(tmpdir(), "declarative-sync-example-"));
const open = (name: string): Promise<AppDatabase> =>
  openDatabase({
    adapter: libsqlAdapter(createClient({ url: `file:${join(dir, `${name}.db`)}` })),
    schema,
    nodeId: name,
  });

/** Sends `from`'s outbox to `to`, as a sync server would, and acknowledges it. */
async function deliver(from: AppDatabase, to: AppDatabase): Promise<DirtyRow[]> {
  const outbox = await from.getDirtyRows();
  const changes: Record<string, { rows: DirtyRow[] }> = {};
  for (const change of outbox) (changes[change.table] ??= { rows: [] }).rows.push(change);
  await to.applyServerChanges(changes as ServerChanges);
  await from.acknowledgeDirtyRows(outbox);
  return outbox;
}

const show = async (label: string, db: AppDatabase) => {
  const tasks = await db.all("tasks");
  const notes = await db.all("notes");
  console.log(
    `  ${label} tasks: ${tasks.map((t) => `${t.title}${t.done ? " ✓" : ""}`).join(", ")}`,
  );
  console.log(
    `  ${label} notes: ${
      notes.map((n) => `${n.body} [${n.color ?? "no color"}${n.pinned ? ", pinned" : ""}]`).join(
        ", ",
      )
    }`,
  );
};

try {
  const alice = await open("alice");
  const bob = await open("bob");

  console.log("1. Alice creates two tasks and a note, then shares them with Bob.");
  const milk = await alice.insert("tasks", { title: "Buy milk" });
  const bread = await alice.insert("tasks", { title: "Bake bread" });
  const note = await alice.insert("notes", { body: "Party on Friday" });
  await deliver(alice, bob);
  await show("bob  ", bob);

  console.log("2. Both go offline and edit.");
  await alice.update("tasks", milk.system_id, { title: "Buy oat milk" });
  await alice.update("tasks", milk.system_id, { done: 1 });
  await alice.update("notes", note.system_id, { color: "yellow" });
  await bob.update("notes", note.system_id, { pinned: true });
  await bob.delete("tasks", bread.system_id);
  await new Promise((resolve) => setTimeout(resolve, 5)); // Bob's next edit is later
  await bob.update("tasks", milk.system_id, { title: "Buy almond milk" });
  console.log(`  alice's outbox: ${await alice.countDirtyRows()} rows for 3 writes (coalesced)`);
  console.log(`  bob's outbox:   ${await bob.countDirtyRows()} rows`);

  console.log("3. They reconnect and exchange their changes.");
  await deliver(alice, bob);
  await deliver(bob, alice);
  await show("alice", alice);
  await show("bob  ", bob);

  const same = JSON.stringify(await alice.all("tasks", { includeDeleted: true })) ===
      JSON.stringify(await bob.all("tasks", { includeDeleted: true })) &&
    JSON.stringify(await alice.all("notes")) === JSON.stringify(await bob.all("notes"));
  console.log(same ? "Both replicas are equal." : "The replicas differ!");
  console.log(
    "  The task title is Bob's (his edit has the later HLC, so the whole row is his: done reverts);",
  );
  console.log("  the note keeps Alice's color and Bob's pin (notes merge per column).");
  await alice.close();
  await bob.close();
  if (!same) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
