/**
 * The adapter contract (src/adapter.ts) as a suite that every adapter's test
 * file runs against its own adapter (as hono's `runTest({ newRouter })` does
 * for its routers): one list of cases, so a new adapter cannot pass a weaker
 * contract than libSQL's, and no test file runs another adapter's setup.
 *
 * @example
 * ```ts
 * runAdapterConformance("libsql :memory:", () => ({ adapter: memoryAdapter() }));
 * runAdapterConformance("libsql http: (sqld)", async () => {
 *   const sqld = await startSqld();
 *   return { adapter: libsqlAdapter(createClient({ url: sqld.url })), cleanup: sqld.close };
 * }, { skip: skipWithoutSqld });
 * ```
 *
 * @module
 */

import { test as nodeTest } from "node:test";
import assert from "node:assert/strict";
import type { SqlAdapter } from "../src/adapter.ts";
import { SyncError } from "../src/errors.ts";

/** A fresh, empty adapter for one case, and what removes what it left behind. */
export interface OpenedAdapter {
  /** The adapter under test; the suite closes it. */
  readonly adapter: SqlAdapter;
  /** Runs after the adapter is closed (a temporary directory to remove, say). */
  readonly cleanup?: () => void | Promise<void>;
}

/** Options of {@linkcode runAdapterConformance}. */
export interface ConformanceOptions {
  /** Skips every case with this reason (a database server that is not installed, say). */
  readonly skip?: string | false;
}

/**
 * Registers the conformance cases, each named `${name}: …`, each on an
 * adapter of its own from `open`.
 *
 * @param name the adapter's name in the test titles, e.g. `libsql file:`
 * @param open opens a fresh, empty database behind the adapter
 * @param options `skip` skips the cases, with the reason given
 */
export function runAdapterConformance(
  name: string,
  open: () => OpenedAdapter | Promise<OpenedAdapter>,
  options: ConformanceOptions = {},
): void {
  const skip = options.skip ?? false;
  const test = (title: string, fn: () => Promise<void>) => nodeTest(title, { skip }, fn);
  const withAdapter = async (fn: (adapter: SqlAdapter) => Promise<void>): Promise<void> => {
    const { adapter, cleanup } = await open();
    try {
      await adapter.execute({
        sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, data BLOB)",
      });
      await fn(adapter);
    } finally {
      await adapter.close().catch(() => undefined);
      await cleanup?.();
    }
  };

  test(`${name}: execute binds arguments and returns plain rows keyed by column`, () =>
    withAdapter(executeBindsArguments));
  test(`${name}: batch returns every result, RETURNING included`, () =>
    withAdapter(batchReturnsEveryResult));
  test(`${name}: a failing batch applies nothing and raises a constraint SyncError`, () =>
    withAdapter(failingBatchAppliesNothing));
  test(`${name}: transaction commits on resolve and rolls back on throw`, () =>
    withAdapter(transactionCommitsOrRollsBack));
  test(`${name}: operations called during a transaction run after it, never inside it`, () =>
    withAdapter(outsideCallsWaitForTheTransaction));
  test(`${name}: a transaction's executor refuses calls after it ended`, () =>
    withAdapter(endedExecutorRefusesCalls));
  test(`${name}: a read batch returns every result and never sees uncommitted rows`, () =>
    withAdapter(readBatchSeesCommittedRowsOnly));
  test(`${name}: calls after close reject with closed`, async () => {
    // Not through withAdapter: the case is about an adapter that is closed already.
    const { adapter, cleanup } = await open();
    await adapter.close();
    await assert.rejects(
      adapter.execute({ sql: "SELECT 1" }),
      (error: unknown) => error instanceof SyncError && error.code === "closed",
    );
    await cleanup?.();
  });
}

const count = async (adapter: SqlAdapter): Promise<number> =>
  Number((await adapter.execute({ sql: "SELECT count(*) AS n FROM t" })).rows[0]!.n);

async function executeBindsArguments(adapter: SqlAdapter): Promise<void> {
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
}

async function batchReturnsEveryResult(adapter: SqlAdapter): Promise<void> {
  const results = await adapter.batch([
    { sql: "INSERT INTO t (id, name) VALUES (?, ?)", args: [1, "a"] },
    { sql: "UPDATE t SET name = ? WHERE id = ? RETURNING id, name", args: ["b", 1] },
  ]);
  assert.equal(results.length, 2);
  assert.deepEqual(results[1]!.rows, [{ id: 1, name: "b" }]);
}

async function failingBatchAppliesNothing(adapter: SqlAdapter): Promise<void> {
  await adapter.execute({ sql: "INSERT INTO t (id, name) VALUES (1, 'a')" });
  await assert.rejects(
    adapter.batch([
      { sql: "INSERT INTO t (id, name) VALUES (2, 'b')" },
      { sql: "INSERT INTO t (id, name) VALUES (3, 'a')" },
    ]),
    (error: unknown) => error instanceof SyncError && error.code === "constraint",
  );
  assert.equal(await count(adapter), 1);
}

async function transactionCommitsOrRollsBack(adapter: SqlAdapter): Promise<void> {
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
}

async function outsideCallsWaitForTheTransaction(adapter: SqlAdapter): Promise<void> {
  let outside: Promise<unknown> | undefined;
  await assert.rejects(
    adapter.transaction(async (tx) => {
      await tx.execute({ sql: "INSERT INTO t (id, name) VALUES (1, 'a')" });
      outside = adapter.execute({ sql: "INSERT INTO t (id, name) VALUES (2, 'b')" });
      // Give the outside call every chance to slip into the transaction.
      await new Promise((resolve) => setTimeout(resolve, 10));
      throw new Error("roll back");
    }),
    /roll back/,
  );
  await outside;
  const { rows } = await adapter.execute({ sql: "SELECT id FROM t ORDER BY id" });
  assert.deepEqual(rows, [{ id: 2 }]);
}

async function endedExecutorRefusesCalls(adapter: SqlAdapter): Promise<void> {
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
}

async function readBatchSeesCommittedRowsOnly(adapter: SqlAdapter): Promise<void> {
  await adapter.execute({ sql: "INSERT INTO t (id, name) VALUES (1, 'a')" });
  const results = await adapter.batch([
    { sql: "SELECT name FROM t WHERE id = ?", args: [1] },
    { sql: "SELECT count(*) AS n FROM t" },
  ], "read");
  assert.deepEqual(results.map((result) => result.rows), [[{ name: "a" }], [{ n: 1 }]]);

  // A read issued while a transaction has written but not committed: a local adapter runs it
  // after the transaction, a remote one at once from its own snapshot. Either way the row the
  // transaction rolls back is never seen.
  let read: ReturnType<SqlAdapter["batch"]> | undefined;
  await assert.rejects(
    adapter.transaction(async (tx) => {
      await tx.execute({ sql: "INSERT INTO t (id, name) VALUES (2, 'b')" });
      read = adapter.batch([{ sql: "SELECT id FROM t ORDER BY id" }], "read");
      // Not awaited here: a local adapter runs the read only once the transaction has ended.
      await Promise.race([read, new Promise((resolve) => setTimeout(resolve, 20))]);
      throw new Error("roll back");
    }),
    /roll back/,
  );
  const [seen] = await read!;
  assert.deepEqual(seen!.rows, [{ id: 1 }]);
}
