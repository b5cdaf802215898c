// ServerSyncManager with the seed's onFetch / onSend contract (no HTTP here:
// the end-to-end tests cover the HTTP transport).
import { test } from "node:test";
import assert from "node:assert/strict";
import { SyncError } from "../src/errors.ts";
import type { DirtyRow } from "../src/outbox.ts";
import type { RejectedRow } from "../src/rejected.ts";
import type { PushResult } from "../src/protocol.ts";
import type { SyncClock } from "../src/sync_clock.ts";
import { ServerSyncManager, type SyncStatus } from "../src/sync_manager.ts";
import { schema } from "./fixtures.ts";
import { openMemory, withMethod } from "./helpers.ts";

const noFetch = () => Promise.resolve();

function waitFor(manager: EventTarget, predicate: (status: SyncStatus) => boolean, ms = 3_000) {
  return new Promise<SyncStatus>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out waiting for a status")), ms);
    const listener = (event: Event) => {
      const status = (event as CustomEvent<SyncStatus>).detail;
      if (!predicate(status)) return;
      clearTimeout(timer);
      manager.removeEventListener("status", listener);
      resolve(status);
    };
    manager.addEventListener("status", listener);
  });
}

// A clock whose time moves only when the test says: the manager's backoff and
// interval timers run at once, in order, and their delays are exact.
function testClock(start = Date.now()): SyncClock & { next(): Promise<void> } {
  interface Timer {
    readonly at: number;
    readonly order: number;
    readonly fn: () => void;
  }
  let now = start;
  let order = 0;
  const timers: Timer[] = [];
  let timerSet: (() => void) | undefined;
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const timer = { at: now + ms, order: order++, fn };
      timers.push(timer);
      timerSet?.();
      return timer;
    },
    clearTimeout(handle) {
      const at = timers.indexOf(handle as Timer);
      if (at !== -1) timers.splice(at, 1);
    },
    // Waits until a timer is set, moves time on to the earliest and runs it.
    async next() {
      do {
        if (timers.length === 0) await set();
        // A timer never runs in the turn that set it: let that turn end first
        // (one trip round the event loop; no time passes).
        await new Promise((resolve) => setTimeout(resolve, 0));
      } while (timers.length === 0);
      timers.sort((a, b) => a.at - b.at || a.order - b.order);
      const timer = timers.shift()!;
      now = Math.max(now, timer.at);
      timer.fn();
    },
  };
  function set(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const guard = setTimeout(() => reject(new Error("timed out waiting for a timer")), 3_000);
      timerSet = () => {
        timerSet = undefined;
        clearTimeout(guard);
        resolve();
      };
    });
  }
}

test("onSend returning true clears the outbox; false keeps it and reports the error", async () => {
  const db = await openMemory({ schema });
  await db.insertMany("tasks", [{ title: "a" }, { title: "b" }]);
  let accept = false;
  const manager = new ServerSyncManager({
    database: db,
    onFetch: noFetch,
    onSend: () => Promise.resolve(accept),
  });
  await assert.rejects(
    manager.syncNow(),
    (e: unknown) => e instanceof SyncError && e.code === "send_refused",
  );
  assert.equal(manager.status.state, "error");
  assert.equal(manager.status.pending, 2);
  assert.equal(await db.countDirtyRows(), 2);
  accept = true;
  await manager.syncNow();
  assert.equal(manager.status.state, "idle");
  assert.equal(manager.status.pending, 0);
  assert.equal(manager.status.lastError, undefined);
  assert.ok(manager.status.lastSyncAt! <= Date.now());
  await db.close();
});

test("sync sends in bounded batches, oldest first, then fetches until no page is left", async () => {
  const db = await openMemory({ schema });
  const rows = await db.insertMany("tasks", [1, 2, 3, 4, 5].map((i) => ({ title: `t${i}` })));
  const calls: string[] = [];
  let pages = 0;
  const manager = new ServerSyncManager({
    database: db,
    batchSize: 2,
    onSend: (operations: DirtyRow[]) => {
      calls.push(`send ${operations.map((o) => o.data.title).join(",")}`);
      return Promise.resolve(true);
    },
    onFetch: (_db, tableTimestamps) => {
      calls.push(`fetch ${Object.keys(tableTimestamps).sort().join(",")}`);
      pages++;
      return Promise.resolve({ hasMore: pages < 3 });
    },
  });
  await manager.syncNow();
  assert.deepEqual(calls, [
    "send t1,t2",
    "send t3,t4",
    "send t5",
    "fetch files,notes,tasks",
    "fetch files,notes,tasks",
    "fetch files,notes,tasks",
  ]);
  assert.equal(rows.length, 5);
  await db.close();
});

test("the next batch is read while one is being sent; a row rewritten meanwhile goes out again", async () => {
  const db = await openMemory({ schema });
  const rows = await db.insertMany("tasks", [1, 2, 3, 4].map((i) => ({ title: `t${i}` })));
  let reads = 0;
  const counted = withMethod(db, "getOutboxBatch", (read) => (options) => {
    reads++;
    return read(options);
  });
  const sent: string[][] = [];
  let readsDuringFirstSend = 0;
  const manager = new ServerSyncManager({
    database: counted,
    batchSize: 2,
    onFetch: noFetch,
    onSend: async (operations: DirtyRow[]) => {
      sent.push(operations.map((o) => String(o.data.title)));
      if (sent.length === 1) {
        await db.update("tasks", rows[0]!.system_id, { title: "t1 again" });
        await new Promise((resolve) => setTimeout(resolve, 20));
        readsDuringFirstSend = reads;
      }
      return true;
    },
  });
  await manager.syncNow();
  assert.equal(readsDuringFirstSend, 2, "the second batch is read before the first is answered");
  assert.deepEqual(sent, [["t1", "t2"], ["t3", "t4"], ["t1 again"]]);
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("up to sendConcurrency batches travel at once; every change is sent once", async () => {
  for (const [concurrency, expected] of [[undefined, 1], [2, 2], [3, 3]] as const) {
    const db = await openMemory({ schema });
    await db.insertMany("tasks", Array.from({ length: 9 }, (_, i) => ({ title: `t${i}` })));
    let active = 0;
    let most = 0;
    const sent: string[] = [];
    const manager = new ServerSyncManager({
      database: db,
      batchSize: 2,
      sendConcurrency: concurrency,
      onFetch: noFetch,
      onSend: async (operations: DirtyRow[]) => {
        active++;
        most = Math.max(most, active);
        sent.push(...operations.map((o) => String(o.data.title)));
        // The first batch is answered last: verdicts still apply in order.
        await new Promise((resolve) => setTimeout(resolve, sent.length <= 2 ? 30 : 5));
        active--;
        return true;
      },
    });
    await manager.syncNow();
    assert.equal(most, expected, `sendConcurrency ${concurrency}`);
    assert.deepEqual(sent, Array.from({ length: 9 }, (_, i) => `t${i}`));
    assert.equal(await db.countDirtyRows(), 0);
    assert.equal(manager.status.pending, 0);
    await db.close();
  }
});

test("acknowledgements of ten batches are written at once; a failure keeps those answered before it", async () => {
  const db = await openMemory({ schema });
  await db.insertMany("tasks", Array.from({ length: 30 }, (_, i) => ({ title: `t${i}` })));
  let acknowledgements = 0;
  const counted = withMethod(db, "completeBatches", (acknowledge) => (completions) => {
    acknowledgements++;
    return acknowledge(completions);
  });
  let calls = 0;
  const manager = new ServerSyncManager({
    database: counted,
    batchSize: 2,
    onFetch: noFetch,
    onSend: () =>
      ++calls === 13 ? Promise.reject(new Error("network down")) : Promise.resolve(true),
  });
  await assert.rejects(manager.syncNow(), /network down/);
  // Batches 1-12 were answered: 10 written together, then 2 when the sync failed.
  assert.equal(acknowledgements, 2);
  assert.deepEqual(
    (await db.getDirtyRows()).map((d) => d.data.title),
    Array.from({ length: 6 }, (_, i) => `t${24 + i}`),
  );
  await manager.syncNow();
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("a failure while batches travel waits for them and keeps their verdicts", async () => {
  const db = await openMemory({ schema });
  await db.insertMany("tasks", [1, 2, 3, 4].map((i) => ({ title: `t${i}` })));
  let secondAnswered = false;
  const manager = new ServerSyncManager({
    database: db,
    batchSize: 2,
    sendConcurrency: 2,
    onFetch: noFetch,
    onSend: async (operations: DirtyRow[]) => {
      if (operations[0]!.data.title === "t1") {
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error("first batch lost");
      }
      await new Promise((resolve) => setTimeout(resolve, 40));
      secondAnswered = true;
      return true;
    },
  });
  await assert.rejects(manager.syncNow(), /first batch lost/);
  assert.ok(secondAnswered, "the sync ended only after the batch still in flight was answered");
  assert.deepEqual((await db.getDirtyRows()).map((d) => d.data.title), ["t1", "t2"]);
  await db.close();
});

test("an acknowledgement that cannot be written fails the sync", async () => {
  const db = await openMemory({ schema });
  await db.insertMany("tasks", [{ title: "a" }, { title: "b" }]);
  const failing = withMethod(db, "completeBatches", () => () => {
    return Promise.reject(new Error("disk full"));
  });
  const manager = new ServerSyncManager({
    database: failing,
    onFetch: noFetch,
    onSend: () => Promise.resolve(true),
  });
  await assert.rejects(manager.syncNow(), /disk full/);
  assert.equal(manager.status.state, "error");
  assert.equal(await db.countDirtyRows(), 2);
  await db.close();
});

test("entries that cannot be sent do not end the send: the changes behind them go out", async () => {
  const db = await openMemory({ schema });
  const gone = await db.insertMany("tasks", [1, 2, 3, 4].map((i) => ({ title: `gone ${i}` })));
  const kept = await db.insert("notes", { body: "behind them" });
  for (const row of gone) await db.query("DELETE FROM tasks WHERE system_id = ?", [row.system_id]);
  const sent: string[] = [];
  const manager = new ServerSyncManager({
    database: db,
    batchSize: 2,
    onFetch: noFetch,
    onSend: (operations: DirtyRow[]) => {
      sent.push(...operations.map((o) => o.id));
      return Promise.resolve(true);
    },
  });
  await manager.syncNow();
  assert.deepEqual(sent, [kept.system_id]);
  assert.equal(await db.countDirtyRows(), 0);
  assert.equal(await db.countRejectedRows(), 4);
  await db.close();
});

test("one sync at a time: a call during a sync joins it", async () => {
  const db = await openMemory({ schema });
  await db.insert("tasks", { title: "a" });
  let sends = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const manager = new ServerSyncManager({
    database: db,
    onFetch: noFetch,
    onSend: async () => {
      sends++;
      await gate;
      return true;
    },
  });
  const first = manager.syncNow();
  const second = manager.syncNow();
  assert.equal(first, second);
  release();
  await Promise.all([first, second]);
  assert.equal(sends, 1);
  await db.close();
});

test("per-row verdicts: rejected changes move to _sync_rejected, are reported, and never block the rest", async () => {
  const db = await openMemory({ schema });
  const [bad, good1, good2] = await db.insertMany("tasks", [{ title: "bad" }, { title: "ok 1" }, {
    title: "ok 2",
  }]);
  const manager = new ServerSyncManager({
    database: db,
    onFetch: noFetch,
    onSend: (operations) =>
      Promise.resolve(
        operations.map((o): PushResult =>
          o.data.title === "bad"
            ? {
              table: o.table,
              id: o.id,
              status: "rejected",
              code: "forbidden",
              message: "not yours",
            }
            : { table: o.table, id: o.id, status: o.data.title === "ok 2" ? "stale" : "applied" }
        ),
      ),
  });
  const reported: RejectedRow[][] = [];
  manager.addEventListener(
    "rejected",
    (e) => reported.push((e as CustomEvent<RejectedRow[]>).detail),
  );
  await manager.syncNow();
  assert.equal(await db.countDirtyRows(), 0);
  assert.equal(manager.status.rejected, 1);
  assert.equal(reported.length, 1);
  assert.deepEqual(reported[0]!.map((r) => [r.id, r.code, r.message]), [[
    bad!.system_id,
    "forbidden",
    "not yours",
  ]]);
  const [stored] = await db.getRejectedRows();
  assert.equal(stored?.change.data.title, "bad");
  assert.equal(stored?.version, bad!.system_version);
  assert.ok(good1 && good2);

  // retry after editing: the row goes back to the outbox at its new version
  const edited = await db.update("tasks", bad!.system_id, { title: "fixed" });
  await db.retryRejectedRow("tasks", bad!.system_id);
  assert.deepEqual(await db.getRejectedRows(), []);
  const [again] = await db.getDirtyRows();
  assert.equal(again?.version, edited.system_version);
  await manager.syncNow();
  assert.equal(await db.countDirtyRows(), 0);
  assert.equal(manager.status.rejected, 0);
  await db.close();
});

test("a verdict the manager does not know keeps the change queued", async () => {
  const db = await openMemory({ schema });
  await db.insertMany("tasks", [{ title: "a" }, { title: "b" }]);
  const manager = new ServerSyncManager({
    database: db,
    onFetch: noFetch,
    onSend: (operations) =>
      Promise.resolve(operations.map((o) => ({
        table: o.table,
        id: o.id,
        status: (o.data.title === "a" ? "applied" : "error") as "applied",
      }))),
  });
  await manager.syncNow();
  assert.deepEqual((await db.getDirtyRows()).map((d) => d.data.title), ["b"]);
  await db.close();
});

test("discarding a rejection forgets it without touching the row", async () => {
  const db = await openMemory({ schema });
  const row = await db.insert("tasks", { title: "x" });
  const [change] = await db.getDirtyRows();
  await db.rejectDirtyRows([{ change: change!, code: "constraint", message: "duplicate" }]);
  assert.equal(await db.countDirtyRows(), 0);
  assert.equal((await db.getRejectedRows()).length, 1);
  await db.discardRejectedRow("tasks", row.system_id);
  assert.deepEqual(await db.getRejectedRows(), []);
  assert.equal((await db.get("tasks", row.system_id))?.title, "x");
  await db.close();
});

test("a rejection never swallows a newer local write", async () => {
  const db = await openMemory({ schema });
  const row = await db.insert("tasks", { title: "v1" });
  const [sent] = await db.getDirtyRows();
  const newer = await db.update("tasks", row.system_id, { title: "v2" }); // written while the push was in flight
  await db.rejectDirtyRows([{ change: sent!, code: "forbidden", message: "no" }]);
  assert.deepEqual(await db.getRejectedRows(), []);
  const [left] = await db.getDirtyRows();
  assert.equal(left?.version, newer.system_version);
  await db.close();
});

test("a failed sync retries on its own with backoff until it succeeds", async () => {
  const db = await openMemory({ schema });
  await db.insert("tasks", { title: "a" });
  let failures = 3;
  const attempts: number[] = [];
  const clock = testClock();
  const manager = new ServerSyncManager({
    database: db,
    syncInterval: 60_000,
    retryDelay: 10,
    maxRetryDelay: 40,
    random: () => 1,
    clock,
    onFetch: noFetch,
    onSend: () => {
      attempts.push(clock.now());
      if (failures-- > 0) return Promise.reject(new SyncError("offline", "network is down"));
      return Promise.resolve(true);
    },
  });
  const states: string[] = [];
  manager.addEventListener("status", (e) => states.push(e.detail.state));
  const idle = waitFor(
    manager,
    (s) => s.state === "idle" && s.pending === 0 && s.lastSyncAt !== undefined,
  );
  manager.start();
  // The first sync, then a retry after each of the three failures.
  for (let timer = 0; timer < 4; timer++) await clock.next();
  await idle;
  assert.equal(attempts.length, 4);
  assert.ok(states.includes("offline"));
  const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
  assert.ok(gaps[0]! >= 9 && gaps[2]! >= 35, `backoff grows: ${gaps.join(", ")} ms`);
  assert.ok(manager.status.nextSyncAt! > Date.now() + 50_000, "then waits for syncInterval");
  await manager[Symbol.asyncDispose]();
  assert.equal(manager.started, false);
  assert.equal(manager.status.nextSyncAt, undefined);
  await db.close();
});

test("a successful sync is followed by the next one syncInterval later", async () => {
  const db = await openMemory({ schema });
  const clock = testClock();
  const fetchedAt: number[] = [];
  const manager = new ServerSyncManager({
    database: db,
    syncInterval: 60_000,
    clock,
    onFetch: () => {
      fetchedAt.push(clock.now());
      return Promise.resolve();
    },
    onSend: () => Promise.resolve(true),
  });
  const synced: SyncStatus[] = [];
  manager.addEventListener("synced", (e) => synced.push(e.detail));
  const start = clock.now();
  // Due once the sync before it ended: the status that follows its "synced".
  const scheduledAfter = (syncs: number) =>
    waitFor(manager, (s) => s.nextSyncAt !== undefined && synced.length === syncs);
  const first = scheduledAfter(1);
  manager.start();
  await clock.next();
  await first;
  assert.equal(manager.status.nextSyncAt, start + 60_000);
  const second = scheduledAfter(2);
  await clock.next();
  await second;
  assert.deepEqual(fetchedAt, [start, start + 60_000]);
  assert.equal(manager.status.lastSyncAt, start + 60_000);
  assert.equal(manager.status.nextSyncAt, start + 120_000);
  await manager.stop();
  await db.close();
});

test("a started manager keeps the pending count current between syncs", async () => {
  const db = await openMemory({ schema });
  const manager = new ServerSyncManager({
    database: db,
    syncInterval: 60_000,
    onFetch: noFetch,
    onSend: () => Promise.resolve(true),
  });
  const synced = waitFor(manager, (s) => s.state === "idle" && s.lastSyncAt !== undefined);
  manager.start();
  await synced;
  const three = waitFor(manager, (s) => s.pending === 3);
  await db.insertMany("tasks", [{ title: "a" }, { title: "b" }]);
  await db.transaction(async (tx) => {
    await tx.insert("notes", { body: "n" });
  });
  assert.equal((await three).pending, 3, "3 changes waiting");
  await manager.stop();
  await db.close();
});

test("the manager refuses options that cannot work", async () => {
  const db = await openMemory({ schema });
  assert.throws(
    () => new ServerSyncManager({ database: db, onFetch: noFetch, onSend: undefined as never }),
    TypeError,
  );
  const invalid = [{ batchSize: 0 }, ...[0, 0.5, 1.5].map((n) => ({ sendConcurrency: n }))];
  for (const option of invalid) {
    assert.throws(
      () =>
        new ServerSyncManager({
          database: db,
          onFetch: noFetch,
          onSend: () => Promise.resolve(true),
          ...option,
        }),
      RangeError,
      JSON.stringify(option),
    );
  }
  await db.close();
});

test("rejected changes keep their bytes, and entries that cannot be sent are reported, not dropped", async () => {
  const db = await openMemory({ schema });
  const file = await db.insert("files", { name: "a.bin", bytes: new Uint8Array([1, 2, 3]) });
  const gone = await db.insert("tasks", { title: "removed behind the API's back" });
  const [change] = await db.getDirtyRows();
  await db.rejectDirtyRows([{ change: change!, code: "forbidden", message: "no" }]);
  const [rejected] = await db.getRejectedRows();
  assert.equal(rejected?.id, file.system_id);
  assert.ok(rejected?.change.data.bytes instanceof Uint8Array);
  assert.deepEqual([...(rejected!.change.data.bytes as Uint8Array)], [1, 2, 3]);

  await db.query("DELETE FROM tasks WHERE system_id = ?", [gone.system_id]);
  assert.deepEqual(await db.getDirtyRows(), []);
  const missing = (await db.getRejectedRows()).find((r) => r.id === gone.system_id);
  assert.equal(missing?.code, "row_missing");
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

// Resolves once `check()` holds (bounded).
async function eventually(check: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test("a local write while started is sent sendDelay later; a merge is no write", async () => {
  const db = await openMemory({ schema });
  const sent: number[] = [];
  let syncs = 0;
  const manager = new ServerSyncManager({
    database: db,
    syncInterval: 60_000,
    onFetch: noFetch,
    onSend: (rows) => {
      sent.push(rows.length);
      return Promise.resolve(true);
    },
  });
  manager.addEventListener("synced", () => syncs++);
  try {
    manager.start();
    await eventually(
      () => syncs === 1 && manager.status.nextSyncAt !== undefined,
      "the first sync",
    );
    const written = Date.now();
    await db.insert("tasks", { title: "now" });
    await eventually(() => syncs === 2, "the sync of the write");
    assert.deepEqual(sent, [1]);
    assert.ok(Date.now() - written < 1_000, "sent within a second, not at the interval");
    await eventually(() => manager.status.nextSyncAt !== undefined, "the next due time");
    const due = manager.status.nextSyncAt!;
    assert.ok(due - Date.now() > 50_000, "then the interval again");
    await db.applyServerChanges({
      tasks: {
        rows: [{ id: "far", version: db.hlc.now(), data: { title: "merged" } }],
        cursor: "1",
      },
    });
    const [change] = await db.getDirtyRows();
    assert.equal(change, undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(syncs, 2, "a merge sends nothing");
    assert.equal(manager.status.nextSyncAt, due);
  } finally {
    await manager.stop();
    await db.close();
  }
});

test("writes made while a sync runs go out together after it; sendDelay false waits for the interval", async () => {
  const db = await openMemory({ schema });
  const batches: number[] = [];
  let writeDuringSend = true;
  let syncs = 0;
  const manager = new ServerSyncManager({
    database: db,
    syncInterval: 60_000,
    sendDelay: 40,
    onFetch: noFetch,
    onSend: async (rows) => {
      batches.push(rows.length);
      if (writeDuringSend) {
        writeDuringSend = false;
        await db.insertMany("tasks", [{ title: "a" }, { title: "b" }, { title: "c" }]);
      }
      return true;
    },
  });
  manager.addEventListener("synced", () => syncs++);
  try {
    await db.insert("tasks", { title: "first" });
    manager.start();
    await eventually(() => syncs === 2, "the sync after the burst");
    assert.deepEqual(batches, [1, 3], "the three writes of the burst in one send");
  } finally {
    await manager.stop();
  }

  let quietSyncs = 0;
  const quiet = new ServerSyncManager({
    database: db,
    syncInterval: 60_000,
    sendDelay: false,
    onFetch: noFetch,
    onSend: () => Promise.resolve(true),
  });
  quiet.addEventListener("synced", () => quietSyncs++);
  try {
    quiet.start();
    await eventually(() => quietSyncs === 1 && quiet.status.nextSyncAt !== undefined, "a sync");
    const due = quiet.status.nextSyncAt;
    await db.insert("tasks", { title: "waits" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(quietSyncs, 1);
    assert.equal(quiet.status.nextSyncAt, due, "the next sync stays at the interval");
  } finally {
    await quiet.stop();
    await db.close();
  }
  assert.throws(
    () =>
      new ServerSyncManager({
        database: db,
        sendDelay: -1,
        onFetch: noFetch,
        onSend: () => Promise.resolve(true),
      }),
    RangeError,
  );
});

test("waitForFirstSync waits across failed attempts and for every page, then resolves at once", async () => {
  const db = await openMemory({ schema });
  let attempts = 0;
  let pagesLeft = 3;
  const manager = new ServerSyncManager({
    database: db,
    syncInterval: 60_000,
    retryDelay: 5,
    maxRetryDelay: 10,
    maxFetchPages: 2,
    onFetch: () => {
      attempts++;
      if (attempts <= 2) return Promise.reject(new SyncError("offline", "down"));
      pagesLeft--;
      return Promise.resolve({ hasMore: pagesLeft > 0 });
    },
    onSend: () => Promise.resolve(true),
  });
  let resolved = false;
  const first = manager.waitForFirstSync().then(() => (resolved = true));
  try {
    await assert.rejects(manager.syncNow());
    await assert.rejects(manager.syncNow());
    assert.equal(resolved, false, "failed attempts do not end the wait");
    await manager.syncNow(); // two pages of three: a success, yet pages are left
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(resolved, false, "a sync that left pages is not a full sync");
    await manager.syncNow();
    await first;
    assert.equal(resolved, true);
    await manager.waitForFirstSync(); // at once, once one has succeeded
  } finally {
    await manager.stop();
    await db.close();
  }
});

test("the synced event reports what the sync did; progress events follow batches and pages", async () => {
  const db = await openMemory({ schema });
  let page = 0;
  const manager = new ServerSyncManager({
    database: db,
    batchSize: 2,
    onFetch: async (database) => {
      page++;
      const version = database.hlc.now();
      await database.applyServerChanges({
        tasks: {
          rows: [{ id: `far-${page}`, version, data: { title: "far" } }],
          cursor: String(page),
        },
      });
      return { hasMore: page < 2 };
    },
    onSend: (rows) =>
      Promise.resolve(rows.map((row, i) => ({
        table: row.table,
        id: row.id,
        status: i === 0 ? "applied" as const : "stale" as const,
      }))),
  });
  const reports: unknown[] = [];
  const progress: unknown[] = [];
  manager.addEventListener("synced", (e) => reports.push(e.detail.report));
  manager.addEventListener("progress", (e) => progress.push(e.detail));
  try {
    await db.insertMany("tasks", [{ title: "a" }, { title: "b" }, { title: "c" }]);
    await manager.syncNow();
    assert.deepEqual(reports, [{
      sent: 3,
      applied: 2,
      stale: 1,
      rejected: 0,
      pages: 2,
      received: { tasks: 2 },
    }]);
    assert.deepEqual(progress, [
      { sent: 2, pending: 3, pages: 0 },
      { sent: 3, pending: 3, pages: 0 },
      { sent: 3, pending: 3, pages: 1 },
      { sent: 3, pending: 3, pages: 2 },
    ]);
  } finally {
    await manager.stop();
    await db.close();
  }
});
