// The adapter contract (src/adapter.ts), run against every adapter we ship:
// libSQL in memory and libSQL on a file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { SqlAdapter } from "../src/adapter.ts";
import { SyncError } from "../src/errors.ts";
import { fileAdapter, memoryAdapter, tempDir } from "./helpers.ts";

interface Subject {
  readonly name: string;
  open(): { adapter: SqlAdapter; cleanup: () => void };
}

const subjects: Subject[] = [
  { name: "libsql :memory:", open: () => ({ adapter: memoryAdapter(), cleanup: () => {} }) },
  {
    name: "libsql file:",
    open: () => {
      const dir = tempDir();
      return { adapter: fileAdapter(join(dir.path, "conformance.db")), cleanup: dir.cleanup };
    },
  },
];

async function withAdapter(subject: Subject, fn: (adapter: SqlAdapter) => Promise<void>) {
  const { adapter, cleanup } = subject.open();
  try {
    await adapter.execute({
      sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, data BLOB)",
    });
    await fn(adapter);
  } finally {
    await adapter.close().catch(() => undefined);
    cleanup();
  }
}

const count = async (adapter: SqlAdapter) =>
  Number((await adapter.execute({ sql: "SELECT count(*) AS n FROM t" })).rows[0]!.n);

for (const subject of subjects) {
  test(`${subject.name}: execute binds arguments and returns plain rows keyed by column`, () =>
    withAdapter(subject, async (adapter) => {
      const insert = await adapter.execute({
        sql: "INSERT INTO t (id, name, data) VALUES (?, ?, ?)",
        args: [1, "a", new Uint8Array([1, 2, 3])],
      });
      assert.equal(insert.rowsAffected, 1);
      const { rows } = await adapter.execute({
        sql: "SELECT id, name, data FROM t WHERE id = ?",
        args: [1],
      });
      assert.deepEqual(Object.keys(rows[0]!), ["id", "name", "data"]);
      assert.equal(rows[0]!.name, "a");
      assert.ok(rows[0]!.data instanceof Uint8Array);
      assert.deepEqual([...(rows[0]!.data as Uint8Array)], [1, 2, 3]);
    }));

  test(`${subject.name}: batch returns every result, RETURNING included`, () =>
    withAdapter(subject, async (adapter) => {
      const results = await adapter.batch([
        { sql: "INSERT INTO t (id, name) VALUES (?, ?)", args: [1, "a"] },
        { sql: "UPDATE t SET name = ? WHERE id = ? RETURNING id, name", args: ["b", 1] },
      ]);
      assert.equal(results.length, 2);
      assert.deepEqual(results[1]!.rows, [{ id: 1, name: "b" }]);
    }));

  test(`${subject.name}: a failing batch applies nothing and raises a constraint SyncError`, () =>
    withAdapter(subject, async (adapter) => {
      await adapter.execute({ sql: "INSERT INTO t (id, name) VALUES (1, 'a')" });
      await assert.rejects(
        adapter.batch([
          { sql: "INSERT INTO t (id, name) VALUES (2, 'b')" },
          { sql: "INSERT INTO t (id, name) VALUES (3, 'a')" },
        ]),
        (error: unknown) => error instanceof SyncError && error.code === "constraint",
      );
      assert.equal(await count(adapter), 1);
    }));

  test(`${subject.name}: transaction commits on resolve and rolls back on throw`, () =>
    withAdapter(subject, async (adapter) => {
      const value = await adapter.transaction(async (tx) => {
        await tx.execute({ sql: "INSERT INTO t (id, name) VALUES (1, 'a')" });
        const { rows } = await tx.execute({ sql: "SELECT count(*) AS n FROM t" });
        return rows[0]!.n;
      });
      assert.equal(value, 1);
      await assert.rejects(
        adapter.transaction(async (tx) => {
          await tx.batch([{ sql: "INSERT INTO t (id, name) VALUES (2, 'b')" }]);
          throw new Error("boom");
        }),
        /boom/,
      );
      assert.equal(await count(adapter), 1);
      // the adapter is usable after a rollback
      await adapter.execute({ sql: "INSERT INTO t (id, name) VALUES (3, 'c')" });
      assert.equal(await count(adapter), 2);
    }));

  test(`${subject.name}: operations called during a transaction run after it, never inside it`, () =>
    withAdapter(subject, async (adapter) => {
      let outside: Promise<unknown> | undefined;
      await assert.rejects(
        adapter.transaction(async (tx) => {
          await tx.execute({ sql: "INSERT INTO t (id, name) VALUES (1, 'a')" });
          outside = adapter.execute({ sql: "INSERT INTO t (id, name) VALUES (2, 'b')" });
          await new Promise((resolve) => setTimeout(resolve, 10));
          throw new Error("roll back");
        }),
        /roll back/,
      );
      await outside;
      const { rows } = await adapter.execute({ sql: "SELECT id FROM t ORDER BY id" });
      assert.deepEqual(rows, [{ id: 2 }]);
    }));

  test(`${subject.name}: a transaction's executor refuses calls after it ended`, () =>
    withAdapter(subject, async (adapter) => {
      let leaked: { execute: SqlAdapter["execute"] } | undefined;
      await adapter.transaction((tx) => {
        leaked = tx;
        return Promise.resolve();
      });
      await assert.rejects(
        leaked!.execute({ sql: "INSERT INTO t (id) VALUES (9)" }),
        (error: unknown) => error instanceof SyncError && error.code === "closed",
      );
      assert.equal(await count(adapter), 0);
    }));

  test(`${subject.name}: calls after close reject with closed`, async () => {
    const { adapter, cleanup } = subject.open();
    await adapter.close();
    await assert.rejects(
      adapter.execute({ sql: "SELECT 1" }),
      (error: unknown) => error instanceof SyncError && error.code === "closed",
    );
    cleanup();
  });
}
