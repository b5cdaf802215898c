import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { openDatabase } from "../src/database.ts";
import { SyncError } from "../src/errors.ts";
import { parseHlc } from "../src/hlc.ts";
import { schema } from "./fixtures.ts";
import { fileAdapter, manualClock, openMemory, tempDir } from "./helpers.ts";

const isCode = (code: string) => (error: unknown) =>
  error instanceof SyncError && error.code === code;

test("insert stamps the system columns and records the row in the outbox", async () => {
  const clock = manualClock();
  const db = await openMemory({ schema, nodeId: "dev-a", now: clock.now });
  const task = await db.insert("tasks", { title: "Buy milk" });
  assert.match(
    task.system_id,
    /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  );
  assert.equal(task.system_version, "0000001767225600000:000000000:dev-a");
  assert.equal(task.system_created_at, task.system_version);
  assert.equal(task.is_deleted, 0);
  assert.equal(task.done, 0);
  assert.equal(task.notes, null);
  assert.deepEqual(await db.get("tasks", task.system_id), task);
  assert.deepEqual(await db.getDirtyRows(), [{
    table: "tasks",
    id: task.system_id,
    version: task.system_version,
    createdAt: task.system_created_at,
    deleted: false,
    data: { title: "Buy milk", done: 0, notes: null },
  }]);
  await db.close();
});

test("insert keeps a caller-chosen system_id and refuses a duplicate without touching the outbox", async () => {
  const db = await openMemory({ schema });
  await db.insert("tasks", { system_id: "t1", title: "a" });
  await assert.rejects(db.insert("tasks", { system_id: "t1", title: "b" }), isCode("constraint"));
  const dirty = await db.getDirtyRows();
  assert.equal(dirty.length, 1);
  assert.equal(dirty[0]!.data.title, "a");
  await db.close();
});

test("insertMany writes all rows in one transaction or none", async () => {
  const db = await openMemory({ schema });
  const rows = await db.insertMany(
    "tasks",
    Array.from({ length: 1_200 }, (_, i) => ({ title: `t${i}` })),
  );
  assert.equal(rows.length, 1_200);
  assert.equal(
    new Set(rows.map((r) => r.system_version)).size,
    1_200,
    "every row has its own version",
  );
  assert.equal(await db.countDirtyRows(), 1_200);
  await assert.rejects(
    db.insertMany("tasks", [{ title: "ok" }, { system_id: rows[0]!.system_id, title: "dup" }]),
    isCode("constraint"),
  );
  await assert.rejects(
    db.insertMany("tasks", [{ title: "ok" }, { title: 5 as never }]),
    isCode("invalid_value"),
  );
  assert.equal((await db.all("tasks")).length, 1_200);
  assert.equal(await db.countDirtyRows(), 1_200);
  await db.close();
});

test("update stamps a new version and returns the row; unknown or deleted rows are not_found", async () => {
  const db = await openMemory({ schema });
  const task = await db.insert("tasks", { title: "a" });
  const updated = await db.update("tasks", task.system_id, { done: 1, notes: "n" });
  assert.equal(updated.done, 1);
  assert.equal(updated.notes, "n");
  assert.ok(updated.system_version > task.system_version);
  assert.equal(updated.system_created_at, task.system_created_at);
  await assert.rejects(db.update("tasks", "missing", { done: 1 }), isCode("not_found"));
  await db.delete("tasks", task.system_id);
  await assert.rejects(db.update("tasks", task.system_id, { done: 0 }), isCode("not_found"));
  await assert.rejects(db.delete("tasks", task.system_id), isCode("not_found"));
  await assert.rejects(db.delete("tasks", "missing"), isCode("not_found"));
  const dirty = await db.getDirtyRows();
  assert.equal(dirty.length, 1);
  assert.equal(dirty[0]!.deleted, true);
  await db.close();
});

test("delete is a tombstone with a new version, hidden from reads unless asked", async () => {
  const db = await openMemory({ schema });
  const keep = await db.insert("tasks", { title: "keep" });
  const gone = await db.insert("tasks", { title: "gone" });
  await db.delete("tasks", gone.system_id);
  assert.equal(await db.get("tasks", gone.system_id), undefined);
  const tombstone = await db.get("tasks", gone.system_id, { includeDeleted: true });
  assert.equal(tombstone?.is_deleted, 1);
  assert.equal(tombstone?.title, "gone");
  assert.ok(tombstone!.system_version > gone.system_version);
  assert.deepEqual((await db.all("tasks")).map((t) => t.title), ["keep"]);
  assert.deepEqual((await db.all("tasks", { includeDeleted: true })).map((t) => t.title), [
    "keep",
    "gone",
  ]);
  assert.deepEqual(
    (await db.all("tasks", { includeDeleted: true, limit: 1, offset: 1 })).map((t) => t.title),
    ["gone"],
  );
  assert.equal(keep.is_deleted, 0);
  await db.close();
});

test("the outbox coalesces: a row written five times offline is sent once, at its latest version", async () => {
  const db = await openMemory({ schema });
  const task = await db.insert("tasks", { title: "v0" });
  let last = task;
  for (let i = 1; i <= 4; i++) last = await db.update("tasks", task.system_id, { title: `v${i}` });
  const dirty = await db.getDirtyRows();
  assert.equal(dirty.length, 1);
  assert.equal(dirty[0]!.version, last.system_version);
  assert.equal(dirty[0]!.data.title, "v4");
  await db.close();
});

test("getDirtyRows returns the oldest changes first, bounded by limit, across tables", async () => {
  const db = await openMemory({ schema });
  const a = await db.insert("tasks", { title: "a" });
  const n = await db.insert("notes", { body: "n" });
  const b = await db.insert("tasks", { title: "b" });
  await db.update("tasks", a.system_id, { done: 1 });
  const all = await db.getDirtyRows();
  assert.deepEqual(all.map((d) => d.id), [n.system_id, b.system_id, a.system_id]);
  assert.deepEqual((await db.getDirtyRows({ limit: 2 })).map((d) => d.id), [
    n.system_id,
    b.system_id,
  ]);
  await assert.rejects(db.getDirtyRows({ limit: 0 }), RangeError);
  await db.close();
});

test("getDirtyRows after a row read earlier continues from there, before anything is acknowledged", async () => {
  const db = await openMemory({ schema });
  const rows = [];
  for (let i = 0; i < 5; i++) rows.push(await db.insert("tasks", { title: `t${i}` }));
  const first = await db.getDirtyRows({ limit: 2 });
  // Rewritten while the first page is in flight: its entry moves to the end.
  const rewritten = await db.update("tasks", rows[0]!.system_id, { title: "t0 again" });
  const second = await db.getDirtyRows({ limit: 2, after: first.at(-1) });
  const third = await db.getDirtyRows({ limit: 10, after: second.at(-1) });
  assert.deepEqual(first.map((d) => d.id), [rows[0]!.system_id, rows[1]!.system_id]);
  assert.deepEqual(second.map((d) => d.id), [rows[2]!.system_id, rows[3]!.system_id]);
  assert.deepEqual(third.map((d) => [d.id, d.version]), [
    [rows[4]!.system_id, rows[4]!.system_version],
    [rewritten.system_id, rewritten.system_version],
  ]);
  assert.deepEqual(await db.getDirtyRows({ after: third.at(-1) }), []);
  // The first page's acknowledgement leaves the rewrite queued.
  await db.acknowledgeDirtyRows(first);
  assert.deepEqual((await db.getDirtyRows()).map((d) => d.version), [
    rows[2]!.system_version,
    rows[3]!.system_version,
    rows[4]!.system_version,
    rewritten.system_version,
  ]);
  await db.close();
});

test("an outbox batch continues after its own last entry and acknowledges only what it read", async () => {
  const db = await openMemory({ schema });
  const rows = [];
  for (let i = 0; i < 5; i++) rows.push(await db.insert("tasks", { title: `t${i}` }));
  const first = await db.getOutboxBatch({ limit: 2 });
  const rewritten = await db.update("tasks", rows[1]!.system_id, { title: "t1 again" });
  const second = await db.getOutboxBatch({ limit: 2, after: first });
  assert.deepEqual(first.rows.map((d) => d.id), [rows[0]!.system_id, rows[1]!.system_id]);
  assert.deepEqual(second.rows.map((d) => d.id), [rows[2]!.system_id, rows[3]!.system_id]);
  // Both batches in one write; the rewrite made after the first read stays queued.
  await db.completeBatches([{ batch: first }, { batch: second, rows: second.rows.slice(0, 1) }]);
  assert.deepEqual((await db.getDirtyRows()).map((d) => [d.id, d.version]), [
    [rows[3]!.system_id, rows[3]!.system_version],
    [rows[4]!.system_id, rows[4]!.system_version],
    [rewritten.system_id, rewritten.system_version],
  ]);
  const rest = await db.getOutboxBatch();
  await rest.complete();
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("a batch of another database is refused, and rows of a batch continue getDirtyRows exactly", async () => {
  const db = await openMemory({ schema });
  const other = await openMemory({ schema });
  await db.insertMany("tasks", [{ title: "a" }, { title: "b" }, { title: "c" }]);
  await other.insert("tasks", { title: "x" });
  const foreign = await other.getOutboxBatch();
  await assert.rejects(db.getOutboxBatch({ after: foreign }), TypeError);
  await assert.rejects(db.completeBatches([{ batch: foreign }]), TypeError);
  const first = await db.getOutboxBatch({ limit: 1 });
  const rest = await db.getDirtyRows({ after: first.rows[0] });
  assert.deepEqual(rest.map((row) => row.data.title), ["b", "c"]);
  await db.acknowledgeDirtyRows([...first.rows, ...rest]);
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
  await other.close();
});

test("getDirtyRows after a column-table row continues from its outbox entry, not its newer version", async () => {
  const clock = manualClock();
  const db = await openMemory({ schema, nodeId: "dev-a", now: clock.now });
  const note = await db.insert("notes", { body: "local" });
  const task = await db.insert("tasks", { title: "queued behind the note" });
  // The server's newer version of another column: the row's version moves
  // past the task's, while the note's outbox entry keeps its own version.
  const [body, pinned] = [note.system_version, "0000001767225610000:000000000:server"];
  await db.applyServerChanges({
    notes: {
      rows: [{
        id: note.system_id,
        version: pinned,
        deleted: false,
        data: { body: "server", pinned: true, color: null },
        columnVersions: { body: "0000001767225500000:000000000:server", pinned, color: pinned },
      }],
      cursor: "1",
    },
  });
  const [first] = await db.getDirtyRows({ limit: 1 });
  assert.equal(first!.id, note.system_id);
  assert.equal(first!.version, pinned);
  assert.equal(first!.columnVersions!.body, body);
  const rest = await db.getDirtyRows({ after: first });
  assert.deepEqual(rest.map((d) => d.id), [task.system_id]);
  await db.close();
});

test("acknowledging the rows of several reads at once keeps every write made after its read", async () => {
  const db = await openMemory({ schema });
  const [a, b] = await db.insertMany("tasks", [{ title: "a" }, { title: "b" }]);
  const first = await db.getDirtyRows({ limit: 1 }); // a
  const a2 = await db.update("tasks", a!.system_id, { title: "a2" }); // written after that read
  const c = await db.insert("tasks", { title: "c" });
  const all = await db.getDirtyRows(); // b, a2, c
  const last = await db.getDirtyRows({ after: all[1] }); // c: newer than a2
  // Sent: a (first read) and c. Not sent: a2, b.
  await db.acknowledgeDirtyRows([...first, ...last]);
  assert.deepEqual((await db.getDirtyRows()).map((d) => [d.id, d.version]), [
    [b!.system_id, b!.system_version],
    [a2.system_id, a2.system_version],
  ]);
  assert.ok(c);
  await db.close();
});

test("acknowledging removes an entry only if it still holds the sent version", async () => {
  const db = await openMemory({ schema });
  const a = await db.insert("tasks", { title: "a" });
  const b = await db.insert("tasks", { title: "b" });
  const sent = await db.getDirtyRows();
  // a write made while the send is in flight
  const newer = await db.update("tasks", a.system_id, { title: "a2" });
  await db.acknowledgeDirtyRows(sent);
  const left = await db.getDirtyRows();
  assert.deepEqual(left.map((d) => [d.id, d.version]), [[a.system_id, newer.system_version]]);
  assert.equal(left[0]!.data.title, "a2");
  assert.ok(b);
  await db.acknowledgeDirtyRows(left);
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("column tables carry a version per column in the outbox", async () => {
  const db = await openMemory({ schema });
  const note = await db.insert("notes", { body: "hello" });
  const pinned = await db.update("notes", note.system_id, { pinned: true });
  const [dirty] = await db.getDirtyRows();
  assert.deepEqual(dirty, {
    table: "notes",
    id: note.system_id,
    version: pinned.system_version,
    deleted: false,
    createdAt: note.system_created_at,
    data: { body: "hello", pinned: true, color: null },
    columnVersions: {
      body: note.system_version,
      pinned: pinned.system_version,
      color: note.system_version,
      is_deleted: note.system_version,
    },
  });
  await db.close();
});

test("writes to a local-only table are plain and untracked", async () => {
  const db = await openMemory({ schema });
  const row = await db.insert("settings", { key: "ui", value: { theme: "dark" } });
  assert.deepEqual(row, { key: "ui", value: { theme: "dark" } });
  await db.update("settings", "ui", { value: { theme: "light" } });
  assert.deepEqual(await db.get("settings", "ui"), { key: "ui", value: { theme: "light" } });
  await db.delete("settings", "ui");
  assert.equal(await db.get("settings", "ui"), undefined);
  await assert.rejects(db.delete("settings", "ui"), isCode("not_found"));
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("values round-trip with their declared types", async () => {
  const db = await openMemory({ schema });
  const file = await db.insert("files", {
    name: "a.bin",
    size: 1.5,
    bytes: new Uint8Array([0, 255, 7]),
    meta: { w: 3 },
    hidden: true,
  });
  const read = await db.get("files", file.system_id);
  assert.deepEqual(read, file);
  assert.ok(read!.bytes instanceof Uint8Array);
  assert.equal(read!.hidden, true);
  assert.deepEqual(read!.meta, { w: 3 });
  await db.close();
});

test("transaction commits several writes together and rolls all back on throw, outbox included", async () => {
  const db = await openMemory({ schema });
  const kept = await db.transaction(async (tx) => {
    const a = await tx.insert("tasks", { title: "a" });
    await tx.update("tasks", a.system_id, { done: 1 });
    await tx.insert("notes", { body: "n" });
    assert.equal(
      (await tx.get("tasks", a.system_id))?.done,
      1,
      "reads see the transaction's writes",
    );
    return a;
  });
  assert.equal((await db.get("tasks", kept.system_id))?.done, 1);
  assert.equal(await db.countDirtyRows(), 2);
  await assert.rejects(
    db.transaction(async (tx) => {
      await tx.insert("tasks", { title: "b" });
      await tx.delete("tasks", kept.system_id);
      throw new Error("changed my mind");
    }),
    /changed my mind/,
  );
  assert.equal((await db.all("tasks")).length, 1);
  assert.equal(await db.countDirtyRows(), 2);
  const [dirty] = (await db.getDirtyRows()).filter((d) => d.table === "tasks");
  assert.equal(dirty!.deleted, false);
  await db.close();
});

test("query runs raw SQL with bound arguments", async () => {
  const db = await openMemory({ schema });
  await db.insertMany("tasks", [{ title: "a", done: 1 }, { title: "b" }]);
  const rows = await db.query("SELECT title FROM tasks WHERE done = ? ORDER BY title", [1]);
  assert.deepEqual(rows, [{ title: "a" }]);
  await db.close();
});

test("the clock never goes backwards across a close and reopen, even when the wall clock does", async () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, "app.db");
    const clock = manualClock();
    const first = await openDatabase({ adapter: fileAdapter(path), schema, now: clock.now });
    const task = await first.insert("tasks", { title: "a" });
    for (let i = 0; i < 3; i++) await first.update("tasks", task.system_id, { done: i });
    const lastVersion = (await first.get("tasks", task.system_id))!.system_version;
    const nodeId = first.nodeId;
    await first.close();

    clock.advance(-3_600_000); // the wall clock jumps an hour back
    const second = await openDatabase({ adapter: fileAdapter(path), schema, now: clock.now });
    assert.equal(second.nodeId, nodeId, "the node id is kept");
    const updated = await second.update("tasks", task.system_id, { title: "b" });
    assert.ok(updated.system_version > lastVersion, `${updated.system_version} > ${lastVersion}`);
    assert.equal(parseHlc(updated.system_version).ms, parseHlc(lastVersion).ms);
    await second.close();
  } finally {
    dir.cleanup();
  }
});

test("a closed database refuses further calls", async () => {
  const db = await openMemory({ schema });
  await db.close();
  await assert.rejects(db.all("tasks"), isCode("closed"));
});

test("integer columns take safe integers only, so every replica reads back the same value", async () => {
  const db = await openMemory({ schema });
  await assert.rejects(db.insert("tasks", { title: "a", done: 2 ** 60 }), isCode("invalid_value"));
  await assert.rejects(
    db.insert("tasks", { title: "a", done: 2n ** 60n as never }),
    isCode("invalid_value"),
  );
  const row = await db.insert("tasks", { title: "a", done: 7n as never });
  assert.equal(row.done, 7);
  assert.equal((await db.get("tasks", row.system_id))?.done, 7);
  assert.equal(await db.countDirtyRows(), 1);
  await db.close();
});

test("inside a transaction, a failed insertMany leaves nothing behind even if the error is caught", async () => {
  const db = await openMemory({ schema });
  const first = await db.insert("tasks", { title: "existing" });
  const rows = Array.from({ length: 1_500 }, (_, i) => ({ title: `t${i}` }));
  rows.push({ system_id: first.system_id, title: "duplicate" } as never);
  await db.transaction(async (tx) => {
    await assert.rejects(tx.insertMany("tasks", rows), isCode("constraint"));
    await tx.insert("tasks", { title: "after the failure" });
  });
  assert.deepEqual((await db.all("tasks")).map((t) => t.title), ["existing", "after the failure"]);
  assert.equal(await db.countDirtyRows(), 2);
  await db.close();
});
