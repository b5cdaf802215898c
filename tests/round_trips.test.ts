// How many database round trips the server's operations cost, counted where
// they happen: at the adapter (every `execute` or `batch` is one, an
// interactive transaction several) over an embedded file, and as HTTP
// requests reaching a real sqld through a counting proxy, with
// `@libsql/client` and `@libsql/client/web`. A push of any size up to the
// limit is one round trip, a pull page of every table one, a cold start two
// at most.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { createClient as createWebClient } from "@libsql/client/web";
import { openServerDatabase, type ServerDatabase } from "../server/database.ts";
import type { SqlAdapter } from "../src/adapter.ts";
import { formatHlc } from "../src/hlc.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import type { PushChange } from "../src/protocol.ts";
import { defineSchema, integer, table, text } from "../src/schema.ts";
import { startCountingProxy } from "./counting_proxy.ts";
import { tempDir } from "./helpers.ts";
import { skipWithoutSqld, startSqld } from "./sqld.ts";

const schema = defineSchema({
  tasks: table({ title: text().notNull(), done: integer().notNull().default(0) }, {
    withSystemColumns: true,
  }),
  notes: table({ body: text(), color: text() }, { withSystemColumns: true, lww: "column" }),
  todos: table({ owner: text(), title: text() }, { withSystemColumns: true, scope: "owner" }),
});

const alice = { id: "alice" };
let counter = 0;
const version = () => formatHlc({ ms: Date.now(), counter: counter++ % 1e9, nodeId: "n1" });

// `count` changes over the three tables, some rows changed twice, some stale.
function changes(count: number, prefix: string): PushChange[] {
  const list: PushChange[] = [];
  for (let i = 0; list.length < count; i++) {
    const id = `${prefix}-${i % Math.max(1, Math.floor(count * 0.9))}`;
    const kind = i % 3;
    if (kind === 0) {
      list.push({ table: "tasks", id, version: version(), deleted: false, data: { title: id } });
    } else if (kind === 1) {
      list.push({ table: "notes", id, version: version(), deleted: false, data: { body: id } });
    } else {
      list.push({
        table: "todos",
        id,
        version: version(),
        deleted: false,
        data: { owner: "alice", title: id },
      });
    }
  }
  return list;
}

// An adapter that counts its calls into `count`; a transaction counts as
// three (begin, its statements at least once, commit), so a write that
// needs one shows.
function counted(adapter: SqlAdapter, count: (calls: number) => void): SqlAdapter {
  return {
    execute: (statement) => (count(1), adapter.execute(statement)),
    batch: (statements, mode) => (count(1), adapter.batch(statements, mode)),
    transaction: (fn) => (count(3), adapter.transaction(fn)),
    close: () => adapter.close(),
  };
}

// Checks the costs of `open` (a new database, then the same one again):
// `cost()` reads how many round trips happened so far.
async function checkCosts(
  open: () => Promise<ServerDatabase>,
  cost: () => number,
): Promise<void> {
  let start = cost();
  const first = await open();
  assert.ok(cost() - start <= 2, `cold start on a new database: ${cost() - start} round trips`);
  await first.close();
  start = cost();
  const database = await open();
  try {
    assert.equal(cost() - start, 1, "cold start on a migrated database");
    for (const size of [1, 10, 600, 1_000]) {
      const push = changes(size, `p${size}`);
      start = cost();
      const outcome = await database.applyPush(push, { principal: alice });
      assert.equal(cost() - start, 1, `a push of ${size} changes`);
      assert.equal(outcome.results.length, size);
      assert.ok(outcome.results.every((r) => r.status === "applied"), JSON.stringify(outcome));
      start = cost();
      const again = await database.applyPush(push, { principal: alice });
      assert.equal(cost() - start, 1, `the same push of ${size} again`);
      assert.ok(again.results.every((r) => r.status === "stale"));
    }
    start = cost();
    const page = await database.pull({ tasks: null, notes: null, todos: null }, 100, {
      principal: alice,
    });
    assert.equal(cost() - start, 1, "a pull page of three tables");
    assert.deepEqual(Object.values(page).map((p) => [p.rows.length, p.hasMore]), [
      [100, true],
      [100, true],
      [100, true],
    ]);
    start = cost();
    await database.pull({ tasks: page.tasks!.cursor }, 100, { principal: alice });
    assert.equal(cost() - start, 1, "a pull page of one table");
  } finally {
    await database.close();
  }
}

test("round trips on an embedded file: a push of up to 1,000 changes is one, a pull page one, a cold start two", async () => {
  const dir = tempDir();
  let calls = 0;
  try {
    const url = `file:${join(dir.path, "server.db")}`;
    await checkCosts(
      () =>
        openServerDatabase({
          adapter: counted(libsqlAdapter(createClient({ url })), (n) => calls += n),
          schema,
        }),
      () => calls,
    );
  } finally {
    dir.cleanup();
  }
});

for (
  const [name, connect] of [
    ["@libsql/client", createClient],
    ["@libsql/client/web", createWebClient],
  ] as const
) {
  test(
    `round trips reaching sqld over HTTP (${name}): a push is one request, a pull page one, a cold start two`,
    {
      skip: skipWithoutSqld,
    },
    async () => {
      await using sqld = await startSqld();
      await using proxy = await startCountingProxy(sqld.url);
      await checkCosts(
        () => openServerDatabase({ adapter: libsqlAdapter(connect({ url: proxy.url })), schema }),
        () => proxy.requests(),
      );
    },
  );
}
