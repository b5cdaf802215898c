// db.watch: a query's rows at once, then after every committed change to a
// table it reads — local writes, transactions, merges — and never for other
// tables, a rolled-back transaction, or an older state after a newer one.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { openDatabase } from "../src/database.ts";
import { formatHlc } from "../src/hlc.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { defineSchema, integer, table, text } from "../src/schema.ts";
import { tablesRead } from "../src/watch.ts";
import { openMemory, tempDir } from "./helpers.ts";
import { skipWithoutSqld, startSqld } from "./sqld.ts";

const schema = defineSchema({
  tasks: table({ title: text().notNull(), done: integer().notNull().default(0) }, {
    withSystemColumns: true,
  }),
  notes: table({ task: text(), body: text() }, { withSystemColumns: true }),
  drafts: table({ body: text() }),
});

// Resolves once `check` holds of the calls so far (bounded).
async function until<T>(calls: T[], check: (calls: T[]) => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check(calls)) {
    if (Date.now() > deadline) throw new Error(`not reached: ${JSON.stringify(calls)}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

test("tablesRead names the tables SQLite opens: joins, views and indexes resolve to their tables", async () => {
  const db = await openMemory({ schema });
  try {
    await db.query("CREATE VIEW open_tasks AS SELECT * FROM tasks WHERE done = 0");
    assert.deepEqual(await tablesRead(db, "SELECT * FROM tasks"), ["tasks"]);
    assert.deepEqual(
      await tablesRead(
        db,
        "SELECT t.title, n.body FROM open_tasks t JOIN notes n ON n.task = t.system_id WHERE t.title = ?",
        ["x"],
      ),
      ["notes", "tasks"],
    );
    assert.deepEqual(await tablesRead(db, "SELECT 1"), []);
  } finally {
    await db.close();
  }
});

test("watch gives the rows at once, then after each committed change to a table it reads, not to others", async () => {
  const db = await openMemory({ schema });
  const calls: string[][] = [];
  const stop = db.watch(
    "SELECT title FROM tasks WHERE is_deleted = 0 ORDER BY title",
    [],
    (rows) => calls.push(rows.map((r) => String(r.title))),
  );
  try {
    await until(calls, (c) => c.length === 1);
    assert.deepEqual(calls, [[]]);
    const a = await db.insert("tasks", { title: "a" });
    await until(calls, (c) => c.length === 2);
    await db.insert("drafts", { body: "elsewhere" });
    await db.insert("notes", { body: "elsewhere" });
    await settle();
    assert.equal(calls.length, 2, "changes to other tables do not re-run it");
    await db.transaction(async (tx) => {
      await tx.insert("tasks", { title: "b" });
      await tx.delete("tasks", a.system_id);
    });
    await until(calls, (c) => c.length === 3);
    await assert.rejects(db.transaction(async (tx) => {
      await tx.insert("tasks", { title: "rolled back" });
      throw new Error("no");
    }));
    const version = formatHlc({ ms: Date.now(), counter: 0, nodeId: "far" });
    await db.applyServerChanges({
      tasks: { rows: [{ id: "far1", version, data: { title: "c" } }], cursor: "1" },
    });
    await until(calls, (c) => c.length === 4);
    assert.deepEqual(calls, [[], ["a"], ["b"], ["b", "c"]]);
    stop();
    await db.insert("tasks", { title: "after stop" });
    await settle();
    assert.equal(calls.length, 4);
  } finally {
    stop();
    await db.close();
  }
});

test("a burst of writes coalesces, and the last call shows the newest state", async () => {
  const db = await openMemory({ schema });
  const counts: number[] = [];
  const stop = db.watch("SELECT count(*) AS n FROM tasks", [], (rows) => {
    counts.push(Number(rows[0]!.n));
  });
  try {
    await until(counts, (c) => c.length === 1);
    await Promise.all(Array.from({ length: 50 }, (_, i) => db.insert("tasks", { title: `t${i}` })));
    await until(counts, (c) => c.at(-1) === 50);
    await settle();
    assert.equal(counts.at(-1), 50);
    assert.ok(counts.length < 50, `${counts.length} runs for 50 writes`);
    for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! >= counts[i - 1]!, "never older");
  } finally {
    stop();
    await db.close();
  }
});

test("re-runs are throttled: the first change after a quiet moment runs at once, a burst shares one run per throttle", async () => {
  const db = await openMemory({ schema });
  const runs: { n: number; at: number }[] = [];
  const stop = db.watch("SELECT count(*) AS n FROM tasks", [], (rows) => {
    runs.push({ n: Number(rows[0]!.n), at: performance.now() });
  }, { throttle: 100 });
  try {
    await until(runs, (r) => r.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 150));
    // A lone write after a quiet moment: seen at once, not a throttle later.
    const wrote = performance.now();
    await db.insert("tasks", { title: "first" });
    await until(runs, (r) => r.at(-1)!.n === 1);
    assert.ok(runs.at(-1)!.at - wrote < 60, `seen ${runs.at(-1)!.at - wrote} ms after the write`);

    // Writes one after another for 400 ms: about one run per 100 ms, the last one current.
    const before = runs.length;
    const started = performance.now();
    let written = 1;
    while (performance.now() - started < 400) {
      await db.insert("tasks", { title: `t${written++}` });
    }
    await until(runs, (r) => r.at(-1)!.n === written);
    const burst = runs.slice(before);
    assert.ok(burst.length <= 7, `${burst.length} runs for ${written - 1} writes in 400 ms`);
    for (let i = 1; i < burst.length; i++) {
      assert.ok(burst[i]!.at - burst[i - 1]!.at >= 95, "two runs closer than the throttle");
    }
  } finally {
    stop();
    await db.close();
  }
});

test("options.tables overrides what SQLite says; a throwing listener keeps watching; watchAll is typed", async () => {
  const db = await openMemory({ schema });
  let overridden = 0;
  let throwing = 0;
  const typed: string[][] = [];
  const error = console.error;
  console.error = () => {};
  const stops = [
    db.watch("SELECT 1", [], () => overridden++, { tables: ["notes"] }),
    db.watch("SELECT * FROM tasks", [], () => {
      throwing++;
      throw new Error("a broken listener");
    }),
    db.watchAll("tasks", (rows) => typed.push(rows.map((row) => row.title))),
  ];
  try {
    await until([0], () => overridden === 1 && throwing === 1 && typed.length === 1);
    await db.insert("notes", { body: "n" });
    await db.insert("tasks", { title: "x" });
    await until([0], () => overridden === 2 && throwing === 2 && typed.length === 2);
    assert.deepEqual(typed, [[], ["x"]]);
  } finally {
    console.error = error;
    for (const stop of stops) stop();
    await db.close();
  }
});

// The same watch over an adapter: a join's tables found through EXPLAIN, a
// write to one of them re-runs it, a write elsewhere does not.
async function watchesOver(url: string): Promise<void> {
  const db = await openDatabase({ adapter: libsqlAdapter(createClient({ url })), schema });
  const calls: number[] = [];
  try {
    assert.deepEqual(
      await tablesRead(db, "SELECT t.title FROM tasks t JOIN notes n ON n.task = t.system_id"),
      ["notes", "tasks"],
    );
    const stop = db.watch("SELECT count(*) AS n FROM tasks", [], (rows) => {
      calls.push(Number(rows[0]!.n));
    });
    await until(calls, (c) => c.length === 1);
    await db.insert("tasks", { title: "one" });
    await until(calls, (c) => c.at(-1) === 1);
    const runs = calls.length;
    await db.insert("notes", { task: "x", body: "elsewhere" });
    await settle();
    assert.equal(calls.length, runs, "a write to another table re-ran the watch");
    stop();
  } finally {
    await db.close();
  }
}

test("watch works over a file database", async () => {
  const dir = tempDir();
  try {
    await watchesOver(`file:${join(dir.path, "watch.db")}`);
  } finally {
    dir.cleanup();
  }
});

test("watch works over a remote database (sqld over HTTP)", { skip: skipWithoutSqld }, async () => {
  await using sqld = await startSqld();
  await watchesOver(sqld.url);
});

test("a watch ends quietly when its database closes, even with a re-run pending", async () => {
  const db = await openMemory({ schema });
  const errors: unknown[] = [];
  const calls: number[] = [];
  db.watch("SELECT count(*) AS n FROM tasks", [], (rows) => calls.push(Number(rows[0]!.n)), {
    onError: (error) => errors.push(error),
    throttle: 50,
  });
  await until(calls, (c) => c.length === 1);
  await db.insert("tasks", { title: "a" });
  // Within the throttle: the next re-run waits, and the database closes before it.
  await db.insert("tasks", { title: "b" });
  await db.close();
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.deepEqual(errors, []);
});
