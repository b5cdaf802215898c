import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { SqlAdapter, SqlStatement } from "../src/adapter.ts";
import { openDatabase } from "../src/database.ts";
import { SyncError } from "../src/errors.ts";
import { defineSchema, integer, table, text } from "../src/schema.ts";
import { fileAdapter, tempDir } from "./helpers.ts";

const v1 = defineSchema({
  tasks: table({ title: text().notNull(), done: integer().notNull().default(0) }, {
    withSystemColumns: true,
  }),
});

// The statements run through `adapter`, and its calls: each `execute` or
// `batch` is one round trip to a remote database.
function recording(
  adapter: SqlAdapter,
): { adapter: SqlAdapter; statements: string[]; calls: () => number } {
  const statements: string[] = [];
  let calls = 0;
  const note = (s: SqlStatement) => statements.push(s.sql);
  return {
    statements,
    calls: () => calls,
    adapter: {
      execute: (s) => (calls++, note(s), adapter.execute(s)),
      batch: (ss, mode) => (calls++, ss.forEach(note), adapter.batch(ss, mode)),
      transaction: (fn) =>
        adapter.transaction((tx) =>
          fn({
            execute: (s) => (note(s), tx.execute(s)),
            batch: (ss) => (ss.forEach(note), tx.batch(ss)),
          })
        ),
      close: () => adapter.close(),
    },
  };
}

async function withFile(fn: (path: string) => Promise<void>) {
  const dir = tempDir();
  try {
    await fn(join(dir.path, "app.db"));
  } finally {
    dir.cleanup();
  }
}

const destructive = (table: string, column: string) => (error: unknown) => {
  assert.ok(error instanceof SyncError, String(error));
  assert.equal(error.code, "destructive_migration");
  assert.equal(error.details.table, table);
  assert.equal(error.details.column, column);
  assert.ok(error.message.includes(`${table}.${column}`), error.message);
  return true;
};

test("openDatabase creates the tables and the internal tables", () =>
  withFile(async (path) => {
    const db = await openDatabase({ adapter: fileAdapter(path), schema: v1 });
    const names =
      (await db.query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`))
        .map((r) => r.name);
    assert.deepEqual(names, [
      "_dirty_rows",
      "_sync_cursors",
      "_sync_meta",
      "_sync_rejected",
      "tasks",
    ]);
    const columns = (await db.query(`SELECT name FROM pragma_table_info('tasks')`)).map((r) =>
      r.name
    );
    assert.deepEqual(columns, [
      "title",
      "done",
      "system_id",
      "system_version",
      "system_created_at",
      "is_deleted",
    ]);
    await db.close();
  }));

test("reopening an unchanged schema runs no DDL and costs one round trip; migrating, two", () =>
  withFile(async (path) => {
    const created = recording(fileAdapter(path));
    await (await openDatabase({ adapter: created.adapter, schema: v1 })).close();
    assert.equal(
      created.calls(),
      3,
      "a new database: the read that finds nothing, the DDL, the node id",
    );
    const { adapter, statements, calls } = recording(fileAdapter(path));
    const db = await openDatabase({ adapter, schema: v1 });
    assert.deepEqual(statements.filter((s) => /^\s*(CREATE|ALTER|DROP)/i.test(s)), []);
    assert.equal(calls(), 1, statements.join("\n"));
    await db.close();
    const v2 = defineSchema({
      tasks: table(
        { title: text().notNull(), done: integer().notNull().default(0), notes: text() },
        {
          withSystemColumns: true,
        },
      ),
    });
    const migrating = recording(fileAdapter(path));
    await (await openDatabase({ adapter: migrating.adapter, schema: v2 })).close();
    assert.equal(migrating.calls(), 2, migrating.statements.join("\n"));
  }));

test("additive changes migrate automatically and keep the data", () =>
  withFile(async (path) => {
    const first = await openDatabase({ adapter: fileAdapter(path), schema: v1 });
    const task = await first.insert("tasks", { title: "kept" });
    await first.close();

    const v2 = defineSchema({
      tasks: table({
        title: text().notNull(),
        done: integer().notNull().default(0),
        notes: text(),
        priority: integer().notNull().default(3),
      }, { withSystemColumns: true, indexes: [{ columns: ["priority"] }] }),
      tags: table({ name: text().notNull() }, { withSystemColumns: true }),
    });
    const db = await openDatabase({ adapter: fileAdapter(path), schema: v2 });
    const read = await db.get("tasks", task.system_id);
    assert.equal(read?.title, "kept");
    assert.equal(read?.notes, null);
    assert.equal(read?.priority, 3);
    assert.equal(read?.system_version, task.system_version);
    const indexes =
      (await db.query(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'`))
        .map((r) => r.name);
    assert.ok(indexes.includes("tasks_priority_idx"), indexes.join());
    await db.insert("tags", { name: "new table works" });
    assert.equal(await db.countDirtyRows(), 2);
    await db.close();
  }));

test("a changed index is rebuilt; the rows stay", () =>
  withFile(async (path) => {
    const indexed = (columns: ("title" | "done")[]) =>
      defineSchema({
        tasks: table({ title: text().notNull(), done: integer().notNull().default(0) }, {
          withSystemColumns: true,
          indexes: [{ name: "tasks_lookup", columns }],
        }),
      });
    const first = await openDatabase({ adapter: fileAdapter(path), schema: indexed(["done"]) });
    await first.insert("tasks", { title: "kept" });
    await first.close();
    const db = await openDatabase({
      adapter: fileAdapter(path),
      schema: indexed(["done", "title"]),
    });
    const [index] = await db.query(`SELECT sql FROM sqlite_master WHERE name = 'tasks_lookup'`);
    assert.match(String(index?.sql), /\("done", "title"\)/);
    assert.equal((await db.all("tasks")).length, 1);
    await db.close();
  }));

test("a dropped column is refused with a SyncError naming table and column, and nothing changes", () =>
  withFile(async (path) => {
    await (await openDatabase({ adapter: fileAdapter(path), schema: v1 })).close();
    const dropped = defineSchema({
      tasks: table({ title: text().notNull() }, { withSystemColumns: true }),
      other: table({ name: text() }, { withSystemColumns: true }),
    });
    await assert.rejects(
      openDatabase({ adapter: fileAdapter(path), schema: dropped }),
      destructive("tasks", "done"),
    );
    const db = await openDatabase({ adapter: fileAdapter(path), schema: v1 });
    const tables = await db.query(`SELECT name FROM sqlite_master WHERE name = 'other'`);
    assert.deepEqual(tables, [], "no part of the refused migration was applied");
    await db.close();
  }));

test("a retyped column is refused", () =>
  withFile(async (path) => {
    await (await openDatabase({ adapter: fileAdapter(path), schema: v1 })).close();
    const retyped = defineSchema({
      tasks: table({ title: text().notNull(), done: text().notNull().default("no") }, {
        withSystemColumns: true,
      }),
    });
    await assert.rejects(
      openDatabase({ adapter: fileAdapter(path), schema: retyped }),
      destructive("tasks", "done"),
    );
  }));

test("a new notNull column without a default is refused", () =>
  withFile(async (path) => {
    await (await openDatabase({ adapter: fileAdapter(path), schema: v1 })).close();
    const invented = defineSchema({
      tasks: table({
        title: text().notNull(),
        done: integer().notNull().default(0),
        owner: text().notNull(),
      }, { withSystemColumns: true }),
    });
    await assert.rejects(
      openDatabase({ adapter: fileAdapter(path), schema: invented }),
      destructive("tasks", "owner"),
    );
  }));

test("turning a synced table local-only, or changing its lww mode, is refused", () =>
  withFile(async (path) => {
    await (await openDatabase({ adapter: fileAdapter(path), schema: v1 })).close();
    const local = defineSchema({
      tasks: table({ title: text().notNull(), done: integer().notNull().default(0) }),
    });
    await assert.rejects(
      openDatabase({ adapter: fileAdapter(path), schema: local }),
      destructive("tasks", "system_id"),
    );
    const perColumn = defineSchema({
      tasks: table({ title: text().notNull(), done: integer().notNull().default(0) }, {
        withSystemColumns: true,
        lww: "column",
      }),
    });
    await assert.rejects(
      openDatabase({ adapter: fileAdapter(path), schema: perColumn }),
      destructive("tasks", "system_column_versions"),
    );
  }));

test("table declarations refuse reserved and malformed names", () => {
  assert.throws(() => table({ system_x: text() }), TypeError);
  assert.throws(() => table({ is_deleted: integer() }), TypeError);
  assert.throws(() => table({ "bad name": text() }), TypeError);
  assert.throws(() => table({ title: text(), Title: text() }), /differ only in case/);
  assert.throws(
    () => defineSchema({ a: table({ x: text() }), A: table({ x: text() }) }),
    /differ only in case/,
  );
  assert.throws(() => defineSchema({ _private: table({ a: text() }) }), TypeError);
  assert.throws(() => table({ a: text() }, { indexes: [{ columns: ["b" as "a"] }] }), TypeError);
  assert.throws(() => table({ a: text() }, { lww: "column" }), TypeError);
  assert.throws(
    () =>
      table({ a: text() }, {
        withSystemColumns: true,
        indexes: [{ columns: ["a"], unique: true }],
      }),
    /synced tables cannot have unique indexes/,
  );
  assert.doesNotThrow(() => table({ a: text() }, { indexes: [{ columns: ["a"], unique: true }] }));
});

test("the schema hash changes with the declarations and only with them", () => {
  const same = defineSchema({
    tasks: table({ title: text().notNull(), done: integer().notNull().default(0) }, {
      withSystemColumns: true,
    }),
  });
  assert.equal(same.hash, v1.hash);
  const other = defineSchema({
    tasks: table({ title: text().notNull(), done: integer().notNull().default(1) }, {
      withSystemColumns: true,
    }),
  });
  assert.notEqual(other.hash, v1.hash);
});
