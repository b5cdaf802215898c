// Held pulls (`wait`): answered at once when rows exist, held while none,
// answered when a change the asker may pull commits — through this instance
// or another over the same database — and never answered with, or timed
// by, another principal's rows. `wait` is bounded by the server, a client
// that goes away and a shutdown end the hold, and a pull with nothing new
// costs no database round trip on an instance that knows the sequence.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "@libsql/client";
import { createSyncServer } from "../server/app.ts";
import { createChangeFeed } from "../server/change_feed.ts";
import { openServerDatabase } from "../server/database.ts";
import { serve } from "../server/serve.ts";
import type { SqlAdapter } from "../src/adapter.ts";
import { formatHlc } from "../src/hlc.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { PROTOCOL_VERSION, type PushChange } from "../src/protocol.ts";
import { syncSchema } from "./fixtures.ts";
import { bearer, fileStore, post, startServer, withServerDatabase } from "./sync_helpers.ts";

const alice = { id: "alice" };
const bob = { id: "bob" };
let counter = 0;
const version = () => formatHlc({ ms: Date.now(), counter: counter++ % 1e9, nodeId: "n1" });

const task = (id: string, title = id): PushChange => ({
  table: "tasks",
  id,
  version: version(),
  deleted: false,
  data: { title },
});
const todo = (id: string, owner: string): PushChange => ({
  table: "todos",
  id,
  version: version(),
  deleted: false,
  data: { owner, title: id },
});

const pullBody = (cursors: Record<string, string | null>, extra: Record<string, unknown> = {}) => ({
  protocol: PROTOCOL_VERSION,
  schema: syncSchema.hash,
  cursors,
  ...extra,
});

type Pages = Record<string, { rows: { id: string }[]; cursor: string; hasMore: boolean }>;

// POSTs a pull and answers its pages and how long it took (ms).
async function timedPull(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; changes: Pages; ms: number; json: Record<string, unknown> }> {
  const started = performance.now();
  const { status, json } = await post(`${url}/pull`, body, headers);
  return { status, changes: json.changes as Pages, ms: performance.now() - started, json };
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// The kinds of call `countingAdapter` counts.
type Call = "execute" | "read batch" | "write batch" | "transaction";

// An adapter over `:memory:` that reports each of its calls to `count`.
function countingAdapter(count: (call: Call) => void): SqlAdapter {
  const inner = libsqlAdapter(createClient({ url: ":memory:" }));
  return {
    execute: (statement) => (count("execute"), inner.execute(statement)),
    batch: (statements, mode) => (
      count(mode === "read" ? "read batch" : "write batch"), inner.batch(statements, mode)
    ),
    transaction: (fn) => (count("transaction"), inner.transaction(fn)),
    close: () => inner.close(),
  };
}

test("a held pull is answered at once when rows exist", async () => {
  const server = await startServer(syncSchema);
  try {
    await server.database.push([task("t1")]);
    const answer = await timedPull(server.url, pullBody({ tasks: null }, { wait: 10_000 }));
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.changes.tasks!.rows.map((r) => r.id), ["t1"]);
    assert.ok(answer.ms < 2_000, `answered after ${answer.ms} ms`);
  } finally {
    await server.close();
  }
});

test("a held pull with nothing new waits for its wait, then answers the empty pages", async () => {
  const server = await startServer(syncSchema);
  try {
    await server.database.push([task("t1")]);
    const first = await timedPull(server.url, pullBody({ tasks: null, notes: null }));
    const cursors = { tasks: first.changes.tasks!.cursor, notes: first.changes.notes!.cursor };
    const held = await timedPull(server.url, pullBody(cursors, { wait: 300 }));
    assert.equal(held.status, 200);
    assert.ok(held.ms >= 250, `answered after ${held.ms} ms`);
    assert.ok(held.ms < 3_000, `answered after ${held.ms} ms`);
    assert.deepEqual(held.changes, {
      tasks: { rows: [], cursor: cursors.tasks, hasMore: false },
      notes: { rows: [], cursor: cursors.notes, hasMore: false },
    });
  } finally {
    await server.close();
  }
});

test("a held pull is answered as soon as a push to the same instance commits", async () => {
  const server = await startServer(syncSchema);
  try {
    const first = await timedPull(server.url, pullBody({ tasks: null }));
    const holding = timedPull(
      server.url,
      pullBody({ tasks: first.changes.tasks!.cursor }, { wait: 20_000 }),
    );
    await delay(150);
    const pushedAt = performance.now();
    await server.database.push([task("t2")]);
    const answer = await holding;
    const after = performance.now() - pushedAt;
    assert.deepEqual(answer.changes.tasks!.rows.map((r) => r.id), ["t2"]);
    assert.ok(answer.ms >= 140, "it was held until the push");
    assert.ok(after < 2_000, `answered ${after} ms after the push`);
  } finally {
    await server.close();
  }
});

test("a held pull is answered when a change commits through another instance over the same database", async () => {
  await withServerDatabase(fileStore, async (url) => {
    const one = await startServer(syncSchema, { url, watchInterval: 50 });
    const two = await startServer(syncSchema, { url, watchInterval: 50 });
    try {
      const first = await timedPull(one.url, pullBody({ tasks: null }));
      const holding = timedPull(
        one.url,
        pullBody({ tasks: first.changes.tasks!.cursor }, { wait: 20_000 }),
      );
      await delay(150);
      const pushedAt = performance.now();
      const pushed = await post(`${two.url}/push`, {
        protocol: PROTOCOL_VERSION,
        schema: syncSchema.hash,
        nodeId: "n1",
        changes: [task("far")],
      });
      assert.equal(pushed.status, 200);
      const answer = await holding;
      const after = performance.now() - pushedAt;
      assert.deepEqual(answer.changes.tasks!.rows.map((r) => r.id), ["far"]);
      assert.ok(after < 3_000, `answered ${after} ms after the push`);
    } finally {
      await one.close();
      await two.close();
    }
  });
});

test("scope holds: another principal's rows neither answer nor time a held pull; the principal's own do", async () => {
  const server = await startServer(syncSchema, {
    authorize: bearer({ a: "alice", b: "bob" }),
  });
  const asAlice = { authorization: "Bearer a" };
  try {
    await server.database.push([todo("a1", "alice")], { principal: alice });
    const first = await timedPull(server.url, pullBody({ todos: null }), asAlice);
    assert.deepEqual(first.changes.todos!.rows.map((r) => r.id), ["a1"]);
    const cursor = first.changes.todos!.cursor;

    // Bob's rows, pushed while Alice holds: she gets nothing, and only when her wait ends.
    const holding = timedPull(server.url, pullBody({ todos: cursor }, { wait: 600 }), asAlice);
    await delay(100);
    await server.database.push([todo("b1", "bob")], { principal: bob });
    await delay(100);
    await server.database.push([todo("b2", "bob"), task("t1")], { principal: bob });
    const held = await holding;
    assert.deepEqual(held.changes.todos!.rows, []);
    assert.equal(held.changes.todos!.hasMore, false);
    assert.ok(held.ms >= 550, `answered after ${held.ms} ms, before its wait ended`);

    // Her own row, from another of her devices, answers at once.
    const again = timedPull(
      server.url,
      pullBody({ todos: held.changes.todos!.cursor }, { wait: 20_000 }),
      asAlice,
    );
    await delay(100);
    await server.database.push([todo("a2", "alice")], { principal: alice });
    const answer = await again;
    assert.deepEqual(answer.changes.todos!.rows.map((r) => r.id), ["a2"]);
    assert.ok(answer.ms < 3_000, `answered after ${answer.ms} ms`);
  } finally {
    await server.close();
  }
});

test("wait is bounded by the server's maxPullWait; a wait out of the protocol's range is a 400", async () => {
  const server = await startServer(syncSchema, { limits: { maxPullWait: 200 } });
  try {
    const bounded = await timedPull(server.url, pullBody({ tasks: null }, { wait: 600_000 }));
    assert.equal(bounded.status, 200);
    assert.ok(bounded.ms < 2_000, `held ${bounded.ms} ms despite maxPullWait 200`);
    for (const wait of [-1, 1.5, 600_001, "100", null, Number.MAX_SAFE_INTEGER]) {
      const { status, json } = await timedPull(server.url, pullBody({ tasks: null }, { wait }));
      assert.equal(status, 400, `wait ${JSON.stringify(wait)}`);
      assert.equal((json.error as { code: string }).code, "malformed");
    }
  } finally {
    await server.close();
  }
});

test("maxPullWait 0 answers every pull at once", async () => {
  const server = await startServer(syncSchema, { limits: { maxPullWait: 0 } });
  try {
    const answer = await timedPull(server.url, pullBody({ tasks: null }, { wait: 5_000 }));
    assert.equal(answer.status, 200);
    assert.ok(answer.ms < 1_000, `held ${answer.ms} ms`);
  } finally {
    await server.close();
  }
});

test("ending held pulls answers them at once with their empty pages, and the server closes", async () => {
  const database = await openServerDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema: syncSchema,
  });
  const server = await serve(createSyncServer({ database }).fetch);
  const holding = [1, 2, 3].map(() =>
    timedPull(server.url, pullBody({ tasks: null }, { wait: 25_000 }))
  );
  await delay(200);
  const started = performance.now();
  database.endHeldPulls();
  await server.close();
  const answers = await Promise.all(holding);
  assert.ok(performance.now() - started < 3_000, "the server closed without waiting for the holds");
  for (const answer of answers) {
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.changes.tasks, { rows: [], cursor: "0", hasMore: false });
  }
  // A pull that comes after is answered at once.
  const at = performance.now();
  const after = await database.pull({ tasks: null }, 10, { wait: 10_000 });
  assert.deepEqual(after.tasks, { rows: [], cursor: "0", hasMore: false });
  assert.ok(performance.now() - at < 1_000, "a pull after the end was held");
  await database.close();
});

test("a client that goes away ends its hold", async () => {
  const feed = createChangeFeed({ read: () => Promise.resolve(0), interval: 20 });
  const controller = new AbortController();
  const waiting = feed.waitPast(0, Date.now() + 30_000, controller.signal);
  assert.equal(feed.waiting, 1);
  controller.abort();
  assert.equal(await waiting, false);
  assert.equal(feed.waiting, 0);

  // Over HTTP: an aborted request's hold is released on the server. While a
  // pull is held the instance reads the sequence every watch interval; once
  // the hold is released, those reads stop.
  let reads = 0;
  const database = await openServerDatabase({
    adapter: countingAdapter((call) => {
      if (call === "execute") reads++;
    }),
    schema: syncSchema,
    watchInterval: 20,
  });
  const server = await serve(createSyncServer({ database }).fetch);
  try {
    const abort = new AbortController();
    const request = fetch(`${server.url}/pull`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(pullBody({ tasks: null }, { wait: 25_000 })),
      signal: abort.signal,
    }).catch((error) => error);
    await delay(200);
    assert.ok(reads >= 3, `${reads} reads while held`);
    abort.abort();
    assert.ok((await request) instanceof Error);
    await delay(100);
    const released = reads;
    await delay(200);
    assert.equal(reads, released, "the instance still watches for an aborted pull");
    // The server keeps serving; a push and a pull after it are answered.
    await database.push([task("t1")]);
    const answer = await timedPull(server.url, pullBody({ tasks: null }, { wait: 25_000 }));
    assert.deepEqual(answer.changes.tasks!.rows.map((r) => r.id), ["t1"]);
  } finally {
    database.endHeldPulls();
    await server.close();
    await database.close();
  }
});

test("a pull with nothing new costs no database round trip on an instance that knows the sequence", async () => {
  let calls = 0;
  const counted = countingAdapter(() => calls++);
  // A long watch interval: what the instance read stays current for the whole test.
  const database = await openServerDatabase({
    adapter: counted,
    schema: syncSchema,
    watchInterval: 60_000,
  });
  try {
    await database.push([task("t1"), todo("a1", "alice")]);
    const first = await database.pull({ tasks: null, todos: null }, 100);
    const cursors = { tasks: first.tasks!.cursor, todos: first.todos!.cursor };
    // The caught-up cursors of both tables are the sequence, whatever the table.
    assert.equal(cursors.tasks, cursors.todos);

    const before = calls;
    for (let i = 0; i < 20; i++) {
      const page = await database.pull(cursors, 100);
      assert.deepEqual(page.tasks, { rows: [], cursor: cursors.tasks, hasMore: false });
    }
    assert.equal(calls - before, 0, "nothing-new pulls read the database");

    // This instance's own push is known at once: the next pull reads it.
    await database.push([task("t2")]);
    const next = await database.pull(cursors, 100);
    assert.deepEqual(next.tasks!.rows.map((r) => r.id), ["t2"]);
  } finally {
    await database.close();
  }
});

test("a commit on this instance wakes only the held pulls it concerns: another principal's scoped rows cost no read", async () => {
  let reads = 0;
  const counted = countingAdapter((call) => {
    if (call === "execute" || call === "read batch") reads++;
  });
  // No poll during the test: what wakes a pull is this instance's commits alone.
  const database = await openServerDatabase({
    adapter: counted,
    schema: syncSchema,
    watchInterval: 60_000,
  });
  try {
    const first = await database.pull({ todos: null }, 100, { principal: alice });
    const before = reads;
    const holding = database.pull({ todos: first.todos!.cursor }, 100, {
      principal: alice,
      wait: 400,
    });
    await delay(50);
    await database.push([todo("b1", "bob")], { principal: bob });
    const held = await holding;
    assert.deepEqual(held.todos!.rows, []);
    assert.equal(reads - before, 0, "Bob's scoped rows woke Alice's held pull");

    // A row of her own wakes it, and it reads.
    const again = database.pull({ todos: held.todos!.cursor }, 100, {
      principal: alice,
      wait: 5_000,
    });
    await delay(50);
    await database.push([todo("a1", "alice")], { principal: alice });
    assert.deepEqual((await again).todos!.rows.map((r) => r.id), ["a1"]);
  } finally {
    await database.close();
  }
});
