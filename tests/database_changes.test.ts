// db.onChange: what changed and where it came from, after every committed
// change — and nothing for a change that did not commit.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { DatabaseChange } from "../src/database.ts";
import { formatHlc } from "../src/hlc.ts";
import { defineSchema, table, text } from "../src/schema.ts";
import { openMemory } from "./helpers.ts";

const schema = defineSchema({
  tasks: table({ title: text() }, { withSystemColumns: true }),
  notes: table({ body: text() }, { withSystemColumns: true, lww: "column" }),
  drafts: table({ body: text() }),
});

test("onChange names the tables of every committed local write, once per write or transaction", async () => {
  const db = await openMemory({ schema });
  const seen: DatabaseChange[] = [];
  const stop = db.onChange((change) => seen.push(change));
  try {
    const task = await db.insert("tasks", { title: "a" });
    await db.update("tasks", task.system_id, { title: "b" });
    await db.insert("drafts", { body: "local only" });
    await db.transaction(async (tx) => {
      await tx.insert("notes", { body: "n" });
      await tx.delete("tasks", task.system_id);
    });
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.insert("tasks", { title: "rolled back" });
        throw new Error("no");
      }),
    );
    assert.deepEqual(seen.map((c) => [c.source, [...c.tables].sort()]), [
      ["local", ["tasks"]],
      ["local", ["tasks"]],
      ["local", ["drafts"]],
      ["local", ["notes", "tasks"]],
    ]);
    stop();
    await db.insert("tasks", { title: "after" });
    assert.equal(seen.length, 4, "an unsubscribed listener hears nothing more");
  } finally {
    await db.close();
  }
});

test("a merge of server changes is a remote change of the tables that got rows", async () => {
  const db = await openMemory({ schema });
  const seen: DatabaseChange[] = [];
  db.onChange((change) => seen.push(change));
  try {
    const version = formatHlc({ ms: Date.now(), counter: 0, nodeId: "server" });
    await db.applyServerChanges({
      tasks: { rows: [{ id: "t1", version, data: { title: "from far" } }], cursor: "1" },
      notes: { rows: [], cursor: "1" },
    });
    await db.applyServerChanges({ notes: { rows: [], cursor: "2" } });
    assert.deepEqual(seen, [{
      tables: ["tasks"],
      source: "remote",
      received: { tasks: 1, notes: 0 },
    }]);
  } finally {
    await db.close();
  }
});

test("a throwing listener affects neither the write nor the other listeners", async () => {
  const db = await openMemory({ schema });
  const heard: string[] = [];
  db.onChange(() => {
    throw new Error("a broken listener");
  });
  db.onChange((change) => heard.push(change.tables.join()));
  const error = console.error;
  console.error = () => {};
  try {
    const row = await db.insert("tasks", { title: "kept" });
    assert.deepEqual(heard, ["tasks"]);
    assert.equal((await db.get("tasks", row.system_id))?.title, "kept");
  } finally {
    console.error = error;
    await db.close();
  }
});

test("setting a change aside, retrying and discarding it are changes of _sync_rejected", async () => {
  const db = await openMemory({ schema });
  const seen: DatabaseChange[] = [];
  try {
    const a = await db.insert("tasks", { title: "a" });
    const b = await db.insert("tasks", { title: "b" });
    db.onChange((change) => seen.push(change));
    const changes = await db.getDirtyRows();
    await db.rejectDirtyRows(
      changes.map((change) => ({ change, code: "invalid_value" as const, message: "no" })),
    );
    await db.retryRejectedRow("tasks", a.system_id);
    await db.discardRejectedRow("tasks", b.system_id);
    assert.deepEqual(seen.map((c) => c.tables), [
      ["_sync_rejected"],
      ["tasks", "_sync_rejected"],
      ["_sync_rejected"],
    ]);
  } finally {
    await db.close();
  }
});
