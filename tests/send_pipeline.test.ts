// The send pipeline alone (src/send_pipeline.ts) over a real libSQL outbox,
// and the verdict mapping it uses (src/verdicts.ts). Answers are released by
// hand, so the order in which batches travel and settle is the test's, not
// the timer's.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Database } from "../src/database.ts";
import { SyncError } from "../src/errors.ts";
import type { DirtyRow } from "../src/outbox.ts";
import type { PushResult } from "../src/protocol.ts";
import type { RejectedRow } from "../src/rejected.ts";
import {
  ACK_BATCHES,
  type SendOutbox,
  sendOutbox,
  type SettledBatch,
} from "../src/send_pipeline.ts";
import { mapVerdicts, rejectedRowsOf, type SendResult } from "../src/verdicts.ts";
import { schema } from "./fixtures.ts";
import { openMemory } from "./helpers.ts";

type Db = Database<typeof schema.tables>;

// The database's outbox, as the manager hands it to the pipeline, with every
// call recorded.
function recordedOutbox(db: Db) {
  const reads: { limit: number; after: string | undefined }[] = [];
  const acknowledged: number[] = [];
  const outbox: SendOutbox = {
    read: (limit, after) => {
      reads.push({ limit, after: after?.rows.at(-1)?.id });
      return db.getOutboxBatch({ limit, after });
    },
    acknowledge: (completions) => {
      acknowledged.push(
        completions.reduce((n, { batch, rows }) => n + (rows ?? batch.rows).length, 0),
      );
      return db.completeBatches(completions);
    },
    reject: async (rejections) => {
      await db.rejectDirtyRows(rejections);
      return rejectedRowsOf(await db.getRejectedRows(), rejections);
    },
  };
  return { outbox, reads, acknowledged };
}

// A `send` whose answers the test gives: each call waits until released.
function heldSend() {
  const calls: { batch: DirtyRow[]; answer(result: SendResult): void; fail(error: Error): void }[] =
    [];
  let active = 0;
  let most = 0;
  let called: (() => void) | undefined;
  const send = (batch: DirtyRow[]) =>
    new Promise<SendResult>((resolve, reject) => {
      active++;
      most = Math.max(most, active);
      const done = () => active--;
      calls.push({
        batch,
        answer: (result) => (done(), resolve(result)),
        fail: (error) => (done(), reject(error)),
      });
      called?.();
    });
  return {
    send,
    calls,
    get most() {
      return most;
    },
    // Resolves once `send` was called `count` times in all.
    async called(count: number) {
      while (calls.length < count) await new Promise<void>((resolve) => (called = resolve));
    },
  };
}

// True once `promise` settled; looked at after a trip round the event loop.
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => (settled = true), () => (settled = true));
  await new Promise((resolve) => setTimeout(resolve, 0));
  return settled;
}

async function tasks(db: Db, count: number) {
  return await db.insertMany(
    "tasks",
    Array.from({ length: count }, (_, i) => ({ title: `t${i + 1}` })),
  );
}

const titles = (rows: readonly DirtyRow[]) => rows.map((row) => String(row.data.title));

test("batches go out oldest first, and each read starts after the batch before it", async () => {
  const db = await openMemory({ schema });
  const rows = await tasks(db, 5);
  const { outbox, reads } = recordedOutbox(db);
  const sent: string[][] = [];
  await sendOutbox({
    outbox,
    send: (batch) => (sent.push(titles(batch)), Promise.resolve(true)),
    batchSize: 2,
    concurrency: 1,
    waiting: 5,
  });
  assert.deepEqual(sent, [["t1", "t2"], ["t3", "t4"], ["t5"]]);
  assert.deepEqual(reads, [
    { limit: 2, after: undefined },
    { limit: 2, after: rows[1]!.system_id },
    { limit: 2, after: rows[3]!.system_id },
    { limit: 2, after: rows[4]!.system_id },
  ]);
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("no more than `concurrency` batches travel at once, and the next is read meanwhile", async () => {
  const db = await openMemory({ schema });
  await tasks(db, 5);
  const { outbox, reads } = recordedOutbox(db);
  const held = heldSend();
  const sending = sendOutbox({ outbox, send: held.send, batchSize: 1, concurrency: 2, waiting: 5 });
  await held.called(2);
  assert.equal(await isSettled(sending), false);
  assert.equal(held.calls.length, 2, "the window is full: a third batch waits");
  assert.equal(reads.length, 3, "the third batch was read while the first two travel");
  held.calls[0]!.answer(true);
  await held.called(3);
  held.calls[1]!.answer(true);
  await held.called(4);
  held.calls[2]!.answer(true);
  await held.called(5);
  held.calls[3]!.answer(true);
  held.calls[4]!.answer(true);
  await sending;
  assert.equal(held.most, 2);
  assert.deepEqual(held.calls.map((call) => titles(call.batch)), [
    ["t1"],
    ["t2"],
    ["t3"],
    ["t4"],
    ["t5"],
  ]);
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("answers settle in the order the batches were sent, whatever order they arrive in", async () => {
  const db = await openMemory({ schema });
  await tasks(db, 3);
  const { outbox } = recordedOutbox(db);
  const held = heldSend();
  const reported: string[] = [];
  const sending = sendOutbox({
    outbox,
    send: held.send,
    batchSize: 1,
    concurrency: 3,
    waiting: 3,
    onRejected: (rows) => reported.push(...rows.map((row) => row.message)),
  });
  await held.called(3);
  // Every batch is refused with its own message; the last is answered first.
  const refuse = (call: (typeof held.calls)[number]) =>
    call.answer(call.batch.map((change): PushResult => ({
      table: change.table,
      id: change.id,
      status: "rejected",
      message: `refused ${change.data.title}`,
    })));
  refuse(held.calls[2]!);
  refuse(held.calls[1]!);
  assert.equal(await isSettled(sending), false);
  assert.deepEqual(reported, [], "nothing settles before the first batch is answered");
  refuse(held.calls[0]!);
  await sending;
  assert.deepEqual(reported, ["refused t1", "refused t2", "refused t3"]);
  assert.equal(await db.countRejectedRows(), 3);
  await db.close();
});

test(`acknowledgements of ${ACK_BATCHES} batches are written together`, async () => {
  const db = await openMemory({ schema });
  await tasks(db, 25);
  const { outbox, acknowledged } = recordedOutbox(db);
  const settled: SettledBatch[] = [];
  await sendOutbox({
    outbox,
    send: () => Promise.resolve(true),
    batchSize: 1,
    concurrency: 1,
    waiting: 25,
    onSettled: (batch) => settled.push(batch),
  });
  assert.deepEqual(acknowledged, [10, 10, 5]);
  assert.equal(settled.length, 25);
  assert.ok(settled.every((batch) => batch.acknowledged === 1 && batch.rejected === 0));
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("verdicts: applied and stale are acknowledged, rejected moves aside, the rest stays queued", async () => {
  const db = await openMemory({ schema });
  const [applied, stale, refused, unknown, silent] = await tasks(db, 5);
  const { outbox } = recordedOutbox(db);
  const settled: SettledBatch[] = [];
  const reported: RejectedRow[][] = [];
  await sendOutbox({
    outbox,
    send: () =>
      Promise.resolve({
        results: [
          { table: "tasks", id: applied!.system_id, status: "applied" },
          { table: "tasks", id: stale!.system_id, status: "stale" },
          { table: "tasks", id: refused!.system_id, status: "rejected", code: "forbidden" },
          { table: "tasks", id: unknown!.system_id, status: "later" as "applied" },
        ],
      }),
    batchSize: 10,
    concurrency: 1,
    waiting: 5,
    onSettled: (batch) => settled.push(batch),
    onRejected: (rows) => reported.push(rows),
  });
  assert.deepEqual(settled, [{ sent: 5, acknowledged: 2, stale: 1, rejected: 1 }]);
  assert.deepEqual(reported.map((rows) => rows.map((row) => [row.id, row.code, row.message])), [
    [[refused!.system_id, "forbidden", "The server rejected the change"]],
  ]);
  assert.deepEqual((await db.getDirtyRows()).map((row) => row.id), [
    unknown!.system_id,
    silent!.system_id,
  ]);
  await db.close();
});

test("mapVerdicts: true accepts all; a verdict without a code is 'rejected'; unknown ones keep the change", async () => {
  const db = await openMemory({ schema });
  await tasks(db, 3);
  const batch = await db.getDirtyRows();
  const [a, b, c] = batch;
  assert.deepEqual(mapVerdicts(batch, true), { acknowledged: batch, rejections: [], stale: 0 });
  const verdicts: PushResult[] = [
    { table: "tasks", id: a!.id, status: "stale" },
    { table: "tasks", id: b!.id, status: "rejected", message: "no" },
    { table: "notes", id: c!.id, status: "applied" }, // another table's row: no verdict for c
  ];
  const expected = {
    acknowledged: [a],
    rejections: [{ change: b, code: "rejected", message: "no" }],
    stale: 1,
  };
  assert.deepEqual(mapVerdicts(batch, verdicts), expected);
  assert.deepEqual(mapVerdicts(batch, { results: verdicts }), expected);
  assert.deepEqual(mapVerdicts(batch, []), { acknowledged: [], rejections: [], stale: 0 });
  await db.close();
});

test("false fails the send with send_refused and keeps every change queued", async () => {
  const db = await openMemory({ schema });
  await tasks(db, 3);
  const { outbox, acknowledged } = recordedOutbox(db);
  await assert.rejects(
    sendOutbox({
      outbox,
      send: () => Promise.resolve(false),
      batchSize: 2,
      concurrency: 1,
      waiting: 3,
    }),
    (error: unknown) => error instanceof SyncError && error.code === "send_refused",
  );
  assert.deepEqual(acknowledged, []);
  assert.equal(await db.countDirtyRows(), 3);
  await db.close();
});

test("a failure waits for the batches still in flight and keeps their verdicts", async () => {
  const db = await openMemory({ schema });
  await tasks(db, 6);
  const { outbox } = recordedOutbox(db);
  const held = heldSend();
  const sending = sendOutbox({ outbox, send: held.send, batchSize: 2, concurrency: 3, waiting: 6 });
  await held.called(3);
  held.calls[1]!.fail(new Error("second batch lost"));
  held.calls[0]!.answer(true);
  // The first batch settled; the second failed; the third is still travelling.
  assert.equal(await isSettled(sending), false, "the send waits for the batch in flight");
  held.calls[2]!.answer(true);
  await assert.rejects(sending, /second batch lost/);
  assert.deepEqual(titles(await db.getDirtyRows()), ["t3", "t4"]);
  await db.close();
});

test("the first error is the one reported, even if the outbox then fails too", async () => {
  const db = await openMemory({ schema });
  await tasks(db, 4);
  const { outbox } = recordedOutbox(db);
  const failing: SendOutbox = {
    ...outbox,
    acknowledge: () => Promise.reject(new Error("disk full")),
  };
  const held = heldSend();
  const sending = sendOutbox({
    outbox: failing,
    send: held.send,
    batchSize: 2,
    concurrency: 2,
    waiting: 4,
  });
  await held.called(2);
  held.calls[0]!.fail(new Error("offline"));
  held.calls[1]!.answer(true);
  await assert.rejects(sending, /offline/);
  assert.equal(await db.countDirtyRows(), 4);
  await db.close();
});

test("changes written during the send wait for the next one (it reads one batch past what waited)", async () => {
  const db = await openMemory({ schema });
  await tasks(db, 2);
  const sent: string[][] = [];
  const { outbox } = recordedOutbox(db);
  await sendOutbox({
    outbox,
    send: async (batch) => {
      sent.push(titles(batch));
      if (sent.length === 1) {
        await db.insertMany("tasks", [4, 5, 6, 7].map((i) => ({ title: `later ${i}` })));
      }
      return true;
    },
    batchSize: 1,
    concurrency: 1,
    waiting: 2,
  });
  assert.deepEqual(sent, [["t1"], ["t2"], ["later 4"]]);
  assert.equal(await db.countDirtyRows(), 3);
  await db.close();
});
