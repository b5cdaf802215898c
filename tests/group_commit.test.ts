// Group commit: pushes that reach one server database together share one
// batch and its statements, and each still gets what it would have got
// alone, one after another: its own verdicts, its own held numbers, and a
// failure that is its own.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { openServerDatabase } from "../server/database.ts";
import type { SqlAdapter } from "../src/adapter.ts";
import { formatHlc } from "../src/hlc.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import type { PushChange } from "../src/protocol.ts";
import { defineSchema, table, text } from "../src/schema.ts";
import { tempDir } from "./helpers.ts";

const schema = defineSchema({
  people: table({ name: text(), email: text() }, { withSystemColumns: true }),
  todos: table({ owner: text(), title: text() }, { withSystemColumns: true, scope: "owner" }),
});

const version = (ms: number, node = "n") => formatHlc({ ms, counter: 0, nodeId: node });
const person = (id: string, ms: number, name: string, email = `${id}@x`): PushChange => ({
  table: "people",
  id,
  version: version(ms),
  deleted: false,
  data: { name, email },
});
const todo = (id: string, ms: number, owner: string): PushChange => ({
  table: "todos",
  id,
  version: version(ms, owner),
  deleted: false,
  data: { owner, title: id },
});

// A server database over a file whose adapter counts its batches.
async function open(t: { after(fn: () => void): void }, groupCommit?: boolean) {
  const dir = tempDir();
  const raw = createClient({ url: `file:${join(dir.path, "server.db")}` });
  const inner = libsqlAdapter(raw);
  let batches = 0;
  const adapter: SqlAdapter = {
    ...inner,
    batch: (statements, mode) => (batches++, inner.batch(statements, mode)),
  };
  const database = await openServerDatabase({ adapter, schema, journalMode: "wal", groupCommit });
  t.after(async () => {
    await database.close();
    dir.cleanup();
  });
  return { database, batches: () => batches, raw, adapter: inner };
}

const statuses = (outcome: { results: { status: string; code?: string }[] }) =>
  outcome.results.map((r) => r.code ?? r.status);

test("pushes that arrive together share one batch; a later push of the group sees the earlier ones", async (t) => {
  const { database, batches, adapter } = await open(t);
  // Answered only once on disk: the server's connection syncs every commit (FULL), in WAL mode.
  const { rows: [sync] } = await adapter.execute({ sql: "PRAGMA synchronous" });
  assert.equal(Number(Object.values(sync!)[0]), 2);
  const now = Date.now();
  const start = batches();
  const [a, b, c] = await Promise.all([
    database.applyPush([person("p1", now, "a1"), person("p2", now, "a2")]),
    database.applyPush([person("p1", now + 1, "b1"), person("p3", now, "b3")]),
    database.applyPush([person("p1", now - 5, "c1"), person("p2", now - 5, "c2")]),
  ]);
  assert.equal(batches() - start, 1, "one batch for the three pushes");
  assert.deepEqual(statuses(a), ["applied", "applied"]);
  assert.deepEqual(statuses(b), ["applied", "applied"]);
  assert.deepEqual(statuses(c), ["stale", "stale"], "older than what the pushes before wrote");
  const page = await database.pull({ people: null }, 100);
  const names = Object.fromEntries(page.people!.rows.map((r) => [r.id, r.data.name]));
  assert.deepEqual(names, { p1: "b1", p2: "a2", p3: "b3" });
});

test("each push of a group is answered the numbers its own rows hold, and no other push's", async (t) => {
  const { database, raw } = await open(t);
  const now = Date.now();
  const pushes = Array.from(
    { length: 6 },
    (_, i) => Array.from({ length: 5 }, (_, j) => person(`g${i}-${j}`, now + j, `n${i}`)),
  );
  // One push also writes people rows already written by another in the group, one older.
  pushes[5]!.push(person("g0-0", now - 10, "old"), person("g1-1", now + 50, "new"));
  const outcomes = await Promise.all(pushes.map((changes) => database.applyPush(changes)));
  const { rows } = await raw.execute("SELECT system_id, system_seq FROM people");
  const numberOf = new Map(rows.map((r) => [String(r.system_id), Number(r.system_seq)]));
  outcomes.forEach((outcome, i) => {
    const held = new Set<number>();
    for (const [first, last] of outcome.held ?? []) {
      for (let n = first; n <= last; n++) held.add(n);
    }
    pushes[i]!.forEach((change, j) => {
      const applied = outcome.results[j]!.status === "applied";
      const holds = numberOf.get(change.id)!;
      // The push's own applied rows whose number it still holds are covered…
      const others = pushes.some((p, k) => k !== i && p.some((c) => c.id === change.id));
      if (applied && !others) assert.ok(held.has(holds), `push ${i} holds ${change.id}`);
    });
    // …and no number it names is held by a row it did not write last.
    for (const [id, number] of numberOf) {
      if (!held.has(number)) continue;
      const lastWriter = outcomes.findLastIndex((o, k) =>
        pushes[k]!.some((c, j) => c.id === id && o.results[j]!.status === "applied")
      );
      assert.equal(lastWriter, i, `push ${i} names ${number}, held by ${id}`);
    }
  });
  assert.deepEqual(statuses(outcomes[5]!).slice(5), ["stale", "applied"]);
});

test("a push the database refuses fails alone: the others of its group apply, and its own good rows too", async (t) => {
  const { database, raw } = await open(t);
  await raw.execute("CREATE UNIQUE INDEX people_email ON people (email)");
  const now = Date.now();
  const [good, bad, other] = await Promise.all([
    database.applyPush([person("u1", now, "one", "one@x")]),
    database.applyPush([
      person("u2", now, "two", "two@x"),
      person("u3", now, "clash", "one@x"), // the email of u1
    ]),
    database.applyPush([person("u4", now, "four", "four@x")]),
  ]);
  assert.deepEqual(statuses(good), ["applied"]);
  assert.deepEqual(statuses(bad), ["applied", "constraint"]);
  assert.deepEqual(statuses(other), ["applied"]);
  const { rows } = await raw.execute("SELECT system_id FROM people ORDER BY system_id");
  assert.deepEqual(rows.map((r) => r.system_id), ["u1", "u2", "u4"]);
});

test("in one group, a row one principal inserts is forbidden to another principal's push", async (t) => {
  const { database, batches } = await open(t);
  const now = Date.now();
  const start = batches();
  const [alice, bob] = await Promise.all([
    database.applyPush([todo("t1", now, "alice")], { principal: { id: "alice" } }),
    database.applyPush([todo("t1", now + 5, "bob"), todo("t2", now, "bob")], {
      principal: { id: "bob" },
    }),
  ]);
  assert.equal(batches() - start, 1);
  assert.deepEqual(statuses(alice), ["applied"]);
  assert.deepEqual(statuses(bob), ["forbidden", "applied"]);
  const mine = await database.pull({ todos: null }, 10, { principal: { id: "alice" } });
  assert.deepEqual(mine.todos!.rows.map((r) => [r.id, r.data.owner]), [["t1", "alice"]]);
});

test("with groupCommit false each push is written at once, in a batch of its own", async (t) => {
  const { database, batches } = await open(t, false);
  const now = Date.now();
  const start = batches();
  const outcomes = await Promise.all([
    database.applyPush([person("s1", now, "one")]),
    database.applyPush([person("s1", now + 1, "two")]),
  ]);
  assert.equal(batches() - start, 2);
  assert.deepEqual(outcomes.map(statuses), [["applied"], ["applied"]]);
});
