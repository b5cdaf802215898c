import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { SqlAdapter, SqlStatement } from "../src/adapter.ts";
import { openDatabase } from "../src/database.ts";
import { SyncError } from "../src/errors.ts";
import { formatHlc } from "../src/hlc.ts";
import type { ServerRow } from "../src/merge.ts";
import { schema } from "./fixtures.ts";
import { manualClock, memoryAdapter, openMemory } from "./helpers.ts";

const T0 = 1_767_225_600_000;
const v = (offset: number, node = "srv", counter = 0) =>
  formatHlc({ ms: T0 + offset, counter, nodeId: node });
const isCode = (code: string) => (error: unknown) =>
  error instanceof SyncError && error.code === code;

/** A database whose wall clock stands at T0 + 10 s, so versions near T0 are in the past. */
function openReplica(nodeId = "dev") {
  const clock = manualClock(T0 + 10_000);
  return openMemory({ schema, nodeId, now: clock.now });
}

test("applyServerChanges inserts unknown rows, applies newer versions and ignores older ones", async () => {
  const db = await openReplica();
  await db.applyServerChanges({
    tasks: {
      rows: [{
        id: "a",
        version: v(1),
        deleted: false,
        data: { title: "a1", done: 0, notes: null },
      }],
      cursor: "c1",
    },
  });
  await db.applyServerChanges({
    tasks: {
      rows: [
        {
          id: "a",
          version: v(3),
          createdAt: v(1),
          deleted: false,
          data: { title: "a3", done: 1, notes: "x" },
        },
        {
          id: "a",
          version: v(2),
          deleted: false,
          data: { title: "a2 (older, arrives late)", done: 0, notes: null },
        },
      ],
      cursor: "c2",
    },
  });
  const row = await db.get("tasks", "a");
  assert.deepEqual(row, {
    title: "a3",
    done: 1,
    notes: "x",
    system_id: "a",
    system_version: v(3),
    system_created_at: v(1),
    is_deleted: 0,
  });
  assert.equal(await db.countDirtyRows(), 0, "server rows are not local changes");
  assert.deepEqual(await db.getCursors(), { tasks: "c2", notes: null, files: null });
  await db.close();
});

test("applyServerChanges never overwrites a newer local pending change", async () => {
  const db = await openReplica();
  await db.applyServerChanges({
    tasks: { rows: [{ id: "a", version: v(1), data: { title: "server" } }] },
  });
  const local = await db.update("tasks", "a", { title: "local edit" }); // stamped at T0 + 10 s
  await db.applyServerChanges({
    tasks: { rows: [{ id: "a", version: v(5), data: { title: "older server edit" } }] },
  });
  assert.equal((await db.get("tasks", "a"))?.title, "local edit");
  const dirty = await db.getDirtyRows();
  assert.deepEqual(dirty.map((d) => [d.id, d.version, d.data.title]), [[
    "a",
    local.system_version,
    "local edit",
  ]]);
  await db.close();
});

test("a newer server version replaces an older pending change and drops it from the outbox", async () => {
  const clock = manualClock(T0);
  const db = await openMemory({ schema, nodeId: "dev", now: clock.now });
  const task = await db.insert("tasks", { title: "offline edit" });
  clock.advance(10_000);
  await db.applyServerChanges({
    tasks: {
      rows: [{
        id: task.system_id,
        version: v(5_000, "other"),
        data: { title: "newer elsewhere" },
      }],
    },
  });
  assert.equal((await db.get("tasks", task.system_id))?.title, "newer elsewhere");
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("column tables merge per column: concurrent edits of different columns both survive", async () => {
  const db = await openReplica();
  await db.applyServerChanges({
    notes: {
      rows: [{ id: "n", version: v(1), data: { body: "draft", pinned: false, color: null } }],
    },
  });
  const local = await db.update("notes", "n", { color: "red" }); // local edit of color, newer
  await db.applyServerChanges({
    notes: {
      rows: [{
        id: "n",
        version: v(2),
        data: { body: "edited elsewhere", color: "blue" },
        columnVersions: { body: v(2), color: v(2) },
      }],
    },
  });
  const note = await db.get("notes", "n");
  assert.equal(note?.body, "edited elsewhere", "the remote body edit is newer than the local body");
  assert.equal(note?.color, "red", "the local color edit is newer than the remote one");
  assert.equal(note?.pinned, false);
  assert.equal(note?.system_version, local.system_version);
  const [dirty] = await db.getDirtyRows();
  assert.deepEqual(dirty?.columnVersions, {
    body: v(2),
    pinned: v(1),
    color: local.system_version,
    is_deleted: v(1),
  });
  await db.close();
});

test("the flat row shape of the declarative_sqlite seed is accepted", async () => {
  const db = await openReplica();
  await db.applyServerChanges({
    tasks: {
      rows: [{
        system_id: "s",
        system_version: v(2),
        system_created_at: v(1),
        is_deleted: 0,
        title: "flat",
        done: 1,
      }],
      cursor: 10,
    },
  });
  const row = await db.get("tasks", "s");
  assert.equal(row?.title, "flat");
  assert.equal(row?.system_created_at, v(1));
  assert.deepEqual((await db.getCursors()).tasks, 10);
  await db.close();
});

test("applyServerChanges lets the clock receive the newest version", async () => {
  const db = await openReplica();
  const ahead = v(30_000, "fast"); // 20 s ahead of local wall time: within maxDrift
  await db.applyServerChanges({
    tasks: { rows: [{ id: "a", version: ahead, data: { title: "t" } }] },
  });
  assert.ok(db.hlc.last > ahead);
  const task = await db.insert("tasks", { title: "after" });
  assert.ok(task.system_version > ahead);
  await db.close();
});

test("malformed changes raise a SyncError and apply nothing from that call", async () => {
  const db = await openReplica();
  await db.applyServerChanges({
    tasks: { rows: [{ id: "keep", version: v(1), data: { title: "kept" } }], cursor: "c1" },
  });
  const good = { id: "new", version: v(2), data: { title: "must not land" } };
  const cases: [unknown, string][] = [
    [{ tasks: { rows: [good], cursor: "c2" }, nope: { rows: [] } }, "unknown_table"],
    [{ settings: { rows: [] } }, "unknown_table"],
    [
      { tasks: { rows: [good, { id: "x", version: v(3), data: { nope: 1 } }], cursor: "c2" } },
      "unknown_column",
    ],
    [{
      tasks: {
        rows: [good, { id: "x", version: "yesterday", data: { title: "t" } }],
        cursor: "c2",
      },
    }, "invalid_version"],
    [
      { tasks: { rows: [good, { id: "x", version: v(3), data: { title: 42 } }], cursor: "c2" } },
      "invalid_value",
    ],
    [
      { tasks: { rows: [good, { id: "x", version: v(3), data: { title: null } }], cursor: "c2" } },
      "invalid_change",
    ],
    [{ tasks: { rows: [good, { id: "", version: v(3) }], cursor: "c2" } }, "invalid_value"],
    [
      { tasks: { rows: [good, { id: "x", version: v(3), deleted: "yes" }], cursor: "c2" } },
      "invalid_change",
    ],
    [{ tasks: { rows: "nope" } }, "invalid_change"],
    [{
      notes: {
        rows: [{ id: "x", version: v(3), data: { body: "b" }, columnVersions: { body: v(4) } }],
      },
    }, "invalid_version"],
    [{
      tasks: { rows: [good, { id: "x", version: v(600_000), data: { title: "t" } }], cursor: "c2" },
    }, "clock_drift"],
  ];
  const clockBefore = db.hlc.last;
  for (const [changes, code] of cases) {
    await assert.rejects(
      db.applyServerChanges(changes as never),
      isCode(code),
      JSON.stringify(changes),
    );
  }
  assert.equal(db.hlc.last, clockBefore, "a refused call leaves the clock untouched");
  assert.deepEqual((await db.all("tasks")).map((t) => t.system_id), ["keep"]);
  assert.deepEqual((await db.getCursors()).tasks, "c1");
  await db.close();
});

test("applyServerChanges costs far fewer statements than rows and no reads", async () => {
  const statements: SqlStatement[] = [];
  const inner = memoryAdapter();
  const adapter: SqlAdapter = {
    ...inner,
    execute: (s) => inner.execute(s),
    batch: (ss) => inner.batch(ss),
    transaction: (fn) =>
      inner.transaction((tx) =>
        fn({
          execute: (s) => (statements.push(s), tx.execute(s)),
          batch: (ss) => (statements.push(...ss), tx.batch(ss)),
        })
      ),
    close: () => inner.close(),
  };
  const db = await openDatabase({ adapter, schema, now: () => T0 + 10_000 });
  statements.length = 0; // what the migration on open ran is not the merge's
  const rows: ServerRow[] = Array.from({ length: 2_000 }, (_, i) => ({
    id: `r${i}`,
    version: v(i % 5_000, "srv", i),
    data: { title: `t${i}`, done: i % 2 },
  }));
  await db.applyServerChanges({ tasks: { rows, cursor: 1 } });
  assert.ok(statements.length <= 2_000 / 100 + 4, `${statements.length} statements for 2,000 rows`);
  assert.ok(statements.every((s) => !/^\s*SELECT/i.test(s.sql)), "no read-then-write");
  assert.equal((await db.all("tasks")).length, 2_000);
  await db.close();
});

// ---- convergence properties -------------------------------------------------

interface TaskChange {
  id: string;
  version: string;
  deleted: boolean;
  data: { title: string; done: number; notes: string | null };
}

const ids = fc.constantFrom("a", "b", "c", "d");
const nodes = fc.constantFrom("n1", "n2", "n3");

/** Changes with distinct versions (equal versions are one write, never two). */
const taskChanges = fc.uniqueArray(
  fc.record({
    id: ids,
    offset: fc.integer({ min: 0, max: 5_000 }),
    node: nodes,
    deleted: fc.boolean(),
    title: fc.string({ maxLength: 6 }),
    done: fc.integer({ min: 0, max: 1 }),
    notes: fc.option(fc.string({ maxLength: 4 }), { nil: null }),
  }),
  { selector: (c) => `${c.offset}:${c.node}`, maxLength: 25 },
).map((changes) =>
  changes.map((c): TaskChange => ({
    id: c.id,
    version: v(c.offset, c.node),
    deleted: c.deleted,
    data: { title: c.title, done: c.done, notes: c.notes },
  }))
);

/** Applies `changes` in the order of `order`, split into calls at `cuts`. */
async function applyInOrder(
  db: Awaited<ReturnType<typeof openReplica>>,
  table: "tasks" | "notes",
  changes: readonly unknown[],
  order: readonly number[],
  cuts: number,
) {
  const sequence = order.map((i) => changes[i % changes.length]!);
  const size = Math.max(1, Math.ceil(sequence.length / cuts));
  for (let start = 0; start < sequence.length; start += size) {
    await db.applyServerChanges({
      [table]: { rows: sequence.slice(start, start + size) as ServerRow[] },
    });
  }
}

const orders = fc.array(fc.nat({ max: 1_000 }), { minLength: 1, maxLength: 60 });

/**
 * The convergence property for `table`: two replicas apply every change at
 * least once, in different orders, repetitions and call splits, and both end
 * equal to `oracle(changes)` (rows sorted by id, `system_created_at` aside).
 */
function converges<C extends { id: string }>(
  table: "tasks" | "notes",
  changes: fc.Arbitrary<C[]>,
  oracle: (changes: readonly C[]) => Record<string, unknown>[],
) {
  return fc.asyncProperty(
    changes,
    orders,
    orders,
    fc.integer({ min: 1, max: 4 }),
    async (changes, orderA, orderB, cuts) => {
      fc.pre(changes.length > 0);
      const all = changes.map((_, i) => i);
      const a = await openReplica("a");
      const b = await openReplica("b");
      await applyInOrder(a, table, changes, [...orderA, ...all], cuts);
      await applyInOrder(b, table, changes, [...all.reverse(), ...orderB], 1);
      const expected = oracle(changes);
      const strip = (rows: Record<string, unknown>[]) =>
        rows.map(({ system_created_at: _, ...rest }) => rest);
      assert.deepEqual(strip(await a.all(table, { includeDeleted: true })), expected);
      assert.deepEqual(strip(await b.all(table, { includeDeleted: true })), expected);
      await a.close();
      await b.close();
    },
  );
}

const byId = <T>(entries: [string, T][]) => entries.sort(([x], [y]) => (x < y ? -1 : 1));

test("row LWW: any order, any repetition, two replicas converge on the oracle (property)", async () => {
  const oracle = (changes: readonly TaskChange[]) => {
    const newest = new Map<string, TaskChange>();
    for (const change of changes) {
      const current = newest.get(change.id);
      if (current === undefined || change.version > current.version) newest.set(change.id, change);
    }
    return byId([...newest]).map(([id, c]) => ({
      ...c.data,
      system_id: id,
      system_version: c.version,
      is_deleted: c.deleted ? 1 : 0,
    }));
  };
  await fc.assert(converges("tasks", taskChanges, oracle), { numRuns: 60 });
});

interface NoteChange {
  id: string;
  version: string;
  deleted: boolean;
  data: Partial<{ body: string; pinned: boolean; color: string | null }>;
}

const noteChanges = fc.uniqueArray(
  fc.record({
    id: ids,
    offset: fc.integer({ min: 0, max: 5_000 }),
    node: nodes,
    deleted: fc.boolean(),
    body: fc.option(fc.string({ maxLength: 5 }), { nil: undefined }),
    pinned: fc.option(fc.boolean(), { nil: undefined }),
    color: fc.option(fc.option(fc.constantFrom("red", "blue"), { nil: null }), { nil: undefined }),
  }),
  { selector: (c) => `${c.offset}:${c.node}`, maxLength: 25 },
).map((changes) =>
  changes.map((c): NoteChange => {
    const data: NoteChange["data"] = {};
    if (c.body !== undefined) data.body = c.body;
    if (c.pinned !== undefined) data.pinned = c.pinned;
    if (c.color !== undefined) data.color = c.color;
    return { id: c.id, version: v(c.offset, c.node), deleted: c.deleted, data };
  })
);

test("column LWW: any order, any repetition, two replicas converge on the per-column oracle (property)", async () => {
  type Cell = { value: unknown; version: string };
  const oracle = (changes: readonly NoteChange[]) => {
    const rows = new Map<string, Record<string, Cell>>();
    for (const change of changes) {
      const cells = rows.get(change.id) ?? {
        body: { value: "", version: "" },
        pinned: { value: false, version: "" },
        color: { value: null, version: "" },
      };
      for (
        const [name, value] of Object.entries({
          ...change.data,
          is_deleted: change.deleted ? 1 : 0,
        })
      ) {
        const cell = cells[name];
        if (cell === undefined || change.version > cell.version) {
          cells[name] = { value, version: change.version };
        }
      }
      rows.set(change.id, cells);
    }
    return byId([...rows]).map(([id, cells]) => ({
      body: cells.body!.value,
      pinned: cells.pinned!.value,
      color: cells.color!.value,
      system_id: id,
      system_version: Object.values(cells).map((c) => c.version).sort().at(-1),
      is_deleted: cells.is_deleted!.value,
    }));
  };
  await fc.assert(converges("notes", noteChanges, oracle), { numRuns: 60 });
});

test("two states written under one version (a replica restored from an old copy) merge to the same one in any order", async () => {
  const version = v(5, "restored");
  const states = {
    tasks: [
      { id: "t", version, data: { title: "one", done: 0, notes: null } },
      { id: "t", version, data: { title: "two", done: 0, notes: "x" } },
    ],
    notes: [
      { id: "n", version, data: { body: "one", pinned: false, color: null } },
      { id: "n", version, data: { body: "two", pinned: true, color: null } },
    ],
  } as const;
  const results = [];
  for (const order of [[0, 1], [1, 0]]) {
    const db = await openReplica();
    for (const i of order) {
      await db.applyServerChanges({
        tasks: { rows: [states.tasks[i]!] },
        notes: { rows: [states.notes[i]!] },
      });
    }
    results.push([
      await db.query(`SELECT * FROM tasks`),
      await db.query(`SELECT * FROM notes`),
    ]);
    await db.close();
  }
  assert.deepEqual(results[0], results[1]);
});
