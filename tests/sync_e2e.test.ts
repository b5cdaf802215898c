/**
 * Sync end to end: real servers on 127.0.0.1, real libSQL, real HTTP. The
 * tests of convergence, pagination, scope, refusals and value round trips run
 * twice: with the server's database embedded (in memory, or on a file where
 * the test needs one), and on a real libSQL server (sqld) over HTTP, where
 * every statement is a request and a batch is what keeps a push atomic.
 *
 * @example
 * ```sh
 * node --import tsx --test tests/sync_e2e.test.ts
 * ```
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { formatHlc } from "../src/hlc.ts";
import { defineSchema, table, text } from "../src/schema.ts";
import { createHttpSync } from "../src/http_sync.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import { syncSchema as schema } from "./fixtures.ts";
import { tempDir, withMethod } from "./helpers.ts";
import {
  bearer,
  fileStore,
  memoryStore,
  openClient,
  post,
  type ServerStore,
  sqldStore,
  startServer,
  type TestClient,
  withServerDatabase,
} from "./sync_helpers.ts";

type Client = TestClient<typeof schema.tables>;

/**
 * Registers `fn` twice: on the embedded database `embedded` under `title` as it always was, and
 * with the server database on sqld (skipped where sqld is not installed).
 */
function testOnEachServerDatabase(
  title: string,
  embedded: ServerStore,
  fn: (url: string | undefined) => Promise<void>,
): void {
  test(title, () => withServerDatabase(embedded, fn));
  test(
    `${title} (server database ${sqldStore.name})`,
    { skip: sqldStore.skip },
    () => withServerDatabase(sqldStore, fn),
  );
}

const snapshot = async (
  client: Client,
  table: "tasks" | "notes" | "todos" | "files",
) => (await client.db.all(table, { includeDeleted: true }));

async function closeAll(clients: Client[]) {
  for (const client of clients) {
    await client.manager.stop();
    await client.db.close();
  }
}

/**
 * Runs `fn` against a server holding 2,500 tasks (pushed by a writer client,
 * in 3 pages of 1,000), with a reader client that has pulled nothing yet
 * (opened with `reader`'s options); closes everything afterwards.
 */
async function withPagesToPull(
  reader: Parameters<typeof openClient<typeof schema.tables>>[2],
  fn: (server: { url: string }, reader: Client) => Promise<void>,
  url?: string,
) {
  const server = await startServer(schema, { url });
  const writer = await openClient(schema, server);
  const client = await openClient(schema, server, reader);
  try {
    await writer.db.insertMany(
      "tasks",
      Array.from({ length: 2_500 }, (_, i) => ({ title: `t${i}` })),
    );
    await writer.manager.syncNow();
    await fn(server, client);
  } finally {
    await closeAll([writer, client]);
    await server.close();
  }
}

testOnEachServerDatabase(
  "three clients converge after concurrent offline edits, deletes and re-syncs",
  memoryStore,
  async (url) => {
    const server = await startServer(schema, { url });
    const clients = await Promise.all(
      ["a", "b", "c"].map((nodeId) => openClient(schema, server, { nodeId })),
    );
    const [a, b, c] = clients as [Client, Client, Client];
    try {
      const tasks = await a.db.insertMany(
        "tasks",
        [1, 2, 3, 4, 5].map((i) => ({ title: `task ${i}` })),
      );
      const note = await a.db.insert("notes", { body: "shared note" });
      for (const client of clients) await client.manager.syncNow();
      assert.equal((await b.db.all("tasks")).length, 5);

      for (const client of clients) client.online = false;
      await a.db.update("tasks", tasks[0]!.system_id, { title: "renamed by a" });
      await b.db.update("tasks", tasks[0]!.system_id, { done: 1 });
      await c.db.delete("tasks", tasks[1]!.system_id);
      await a.db.update("tasks", tasks[2]!.system_id, { notes: "a's note" });
      await c.db.update("tasks", tasks[2]!.system_id, { title: "c renames 3" });
      await b.db.update("notes", note.system_id, { color: "blue" });
      await c.db.update("notes", note.system_id, { pinned: true });
      await a.db.insert("tasks", { title: "new from a" });
      await b.db.delete("tasks", tasks[4]!.system_id);
      await b.db.insert("tasks", { title: "new from b" });
      for (const client of clients) {
        await assert.rejects(
          client.manager.syncNow(),
          (e: Error & { code?: string }) => e.code === "offline",
        );
        assert.equal(client.manager.status.state, "offline");
      }

      for (const client of clients) client.online = true;
      for (const client of [c, a, b, c, a, b]) await client.manager.syncNow();

      const reference = await snapshot(a, "tasks");
      assert.equal(reference.length, 7);
      for (const client of [b, c]) {
        assert.deepEqual(await snapshot(client, "tasks"), reference);
        assert.deepEqual(await snapshot(client, "notes"), await snapshot(a, "notes"));
      }
      const [shared] = await a.db.all("notes");
      assert.equal(shared?.color, "blue", "b's column edit survives");
      assert.equal(shared?.pinned, true, "c's column edit survives");
      assert.equal(await a.db.get("tasks", tasks[1]!.system_id), undefined, "c's delete holds");
      for (const client of clients) {
        assert.equal(await client.db.countDirtyRows(), 0);
        assert.equal(client.manager.status.pending, 0);
        assert.equal(client.manager.status.state, "idle");
      }
      // the server holds exactly what the clients hold
      const pulled = await server.database.pull({ tasks: null }, 100);
      assert.deepEqual(
        pulled.tasks!.rows.map((r) => `${r.id}@${r.version}`).sort(),
        reference.map((r) => `${r.system_id}@${r.system_version}`).sort(),
      );
    } finally {
      await closeAll(clients);
      await server.close();
    }
  },
);

testOnEachServerDatabase(
  "pagination: 2,500 rows pulled with limit 1,000 arrive exactly once",
  memoryStore,
  async (url) => {
    const pages: number[] = [];
    const seen = new Map<string, number>();
    const counting: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (String(input).endsWith("/pull")) {
        const body = await response.clone().json();
        const rows = body.changes.tasks?.rows ?? [];
        pages.push(rows.length);
        for (const row of rows) seen.set(row.id, (seen.get(row.id) ?? 0) + 1);
      }
      return response;
    };
    await withPagesToPull({ http: { pullLimit: 1_000, fetch: counting } }, async (_, reader) => {
      await reader.manager.syncNow();
      assert.deepEqual(pages, [1_000, 1_000, 500]);
      assert.equal(seen.size, 2_500);
      assert.ok([...seen.values()].every((n) => n === 1), "no row twice");
      assert.equal((await reader.db.all("tasks")).length, 2_500);
      await reader.manager.syncNow();
      assert.deepEqual(pages, [1_000, 1_000, 500, 0], "nothing new: an empty page");
    }, url);
  },
);

test("the HTTP transport asks for the next page while it applies the current one", async () => {
  const events: string[] = [];
  const logged: typeof fetch = (input, init) => {
    if (String(input).endsWith("/pull")) events.push("request");
    return fetch(input, init);
  };
  await withPagesToPull({}, async (server, reader) => {
    const database = withMethod(reader.db, "applyServerChanges", (apply) => async (changes) => {
      events.push("apply");
      try {
        return await apply(changes);
      } finally {
        events.push("applied");
      }
    });
    const http = createHttpSync({ url: server.url, pullLimit: 1_000, fetch: logged });
    const manager = new ServerSyncManager({ database, ...http });
    await manager.syncNow();
    assert.deepEqual(events, [
      "request",
      "request", // page 2, asked for before page 1 is applied
      "apply",
      "applied",
      "request", // page 3
      "apply",
      "applied",
      "apply", // page 3 has no next page: nothing more is asked for
      "applied",
    ]);
    assert.equal((await reader.db.all("tasks")).length, 2_500);
    // A page asked for ahead is used only by the call it was asked for: the
    // cursors of a later sync differ, so it asks anew.
    events.length = 0;
    await manager.syncNow();
    assert.deepEqual(events, ["request", "apply", "applied"]);
  });
});

test("a page asked for ahead is asked for again once the headers changed; pushes may overlap", async () => {
  const sentAs: string[] = [];
  let user = "a";
  await withPagesToPull({}, async (server, reader) => {
    const http = createHttpSync({
      url: server.url,
      pullLimit: 1_000,
      headers: () => ({ "x-user": user }),
      fetch: (input, init) => {
        if (String(input).endsWith("/pull")) {
          sentAs.push(new Headers(init?.headers).get("x-user") ?? "");
        }
        return fetch(input, init);
      },
    });
    assert.equal(http.sendConcurrency, 2);
    // One page a sync: the page asked for ahead waits for the next sync.
    const manager = new ServerSyncManager({ database: reader.db, ...http, maxFetchPages: 1 });
    await manager.syncNow();
    assert.deepEqual(sentAs, ["a", "a"]); // page 1, and page 2 ahead
    user = "b";
    await manager.syncNow();
    assert.deepEqual(sentAs, ["a", "a", "b", "b"]); // page 2 again, page 3 ahead
    await manager.syncNow();
    assert.equal((await reader.db.all("tasks")).length, 2_500);
  });
});

test("two server instances on one database file: every accepted row is pulled exactly once", async () => {
  const dir = tempDir();
  const url = `file:${join(dir.path, "shared.db")}`;
  const first = await startServer(schema, { url });
  const second = await startServer(schema, { url });
  const seen = new Map<string, number>();
  let pushing = true;
  let pullsDuringPushes = 0;
  const counting: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (String(input).endsWith("/pull")) {
      if (pushing) pullsDuringPushes++;
      for (const row of (await response.clone().json()).changes.tasks?.rows ?? []) {
        seen.set(row.id, (seen.get(row.id) ?? 0) + 1);
      }
    }
    return response;
  };
  const writers = await Promise.all(
    [first, second, first, second].map((server, i) =>
      openClient(schema, server, { nodeId: `w${i}`, manager: { batchSize: 20 } })
    ),
  );
  const reader = await openClient(schema, first, { http: { pullLimit: 50, fetch: counting } });
  try {
    for (const [i, writer] of writers.entries()) {
      await writer.db.insertMany(
        "tasks",
        Array.from({ length: 500 }, (_, j) => ({ title: `w${i}-${j}` })),
      );
    }
    const pushes = Promise.all(writers.map((w) => w.manager.syncNow())).finally(() => {
      pushing = false;
    });
    let pulls = 0;
    while (pushing && pulls < 200) {
      await reader.manager.syncNow();
      pulls++;
    }
    await pushes;
    await reader.manager.syncNow();
    assert.ok(pullsDuringPushes > 1, "the reader pulled while the writers pushed");
    assert.equal(seen.size, 2_000);
    assert.ok([...seen.values()].every((n) => n === 1), "no row pulled twice");
    assert.equal((await reader.db.all("tasks")).length, 2_000);
  } finally {
    await closeAll([...writers, reader]);
    await first.close();
    await second.close();
    dir.cleanup();
  }
});

testOnEachServerDatabase(
  "scope: a principal sees and changes only its own rows; no credentials is 401",
  memoryStore,
  async (url) => {
    const server = await startServer(schema, {
      url,
      authorize: bearer({ "token-a": "alice", "token-b": "bob" }),
    });
    const alice = await openClient(schema, server, {
      http: { headers: { authorization: "Bearer token-a" } },
    });
    const bob = await openClient(schema, server, {
      http: { headers: { authorization: "Bearer token-b" } },
    });
    try {
      const mine = await alice.db.insert("todos", { owner: "alice", title: "alice's" });
      await bob.db.insert("todos", { owner: "bob", title: "bob's" });
      const forged = await bob.db.insert("todos", { owner: "alice", title: "forged by bob" });
      await alice.manager.syncNow();
      await bob.manager.syncNow();
      await alice.manager.syncNow();

      assert.deepEqual((await alice.db.all("todos")).map((t) => t.title), ["alice's"]);
      assert.deepEqual(
        (await bob.db.all("todos")).map((t) => t.owner).sort(),
        ["alice", "bob"],
        "bob keeps his local forgery…",
      );
      const [rejected] = await bob.db.getRejectedRows();
      assert.equal(rejected?.id, forged.system_id, "…but the server refused it");
      assert.equal(rejected?.code, "forbidden");

      // Bob tries to overwrite, or take over, Alice's row with a hand-made push.
      const version = formatHlc({ ms: Date.now(), counter: 0, nodeId: "bob" });
      for (const owner of ["alice", "bob"]) {
        const { status, json } = await post(`${server.url}/push`, {
          protocol: PROTOCOL_VERSION,
          nodeId: "bob",
          schema: schema.hash,
          changes: [{
            table: "todos",
            id: mine.system_id,
            version,
            deleted: false,
            data: { owner, title: "hijacked" },
          }],
        }, { authorization: "Bearer token-b" });
        assert.equal(status, 200);
        assert.deepEqual(
          (json.results as { status: string; code: string }[]).map((r) => [r.status, r.code]),
          [["rejected", "forbidden"]],
        );
      }
      const { json: page } = await post(`${server.url}/pull`, {
        protocol: PROTOCOL_VERSION,
        schema: schema.hash,
        cursors: { todos: null },
      }, { authorization: "Bearer token-a" });
      const rows =
        (page.changes as Record<string, { rows: { id: string; data: { title: string } }[] }>).todos!
          .rows;
      assert.deepEqual(rows.map((r) => [r.id, r.data.title]), [[mine.system_id, "alice's"]]);

      for (const path of ["/push", "/pull"]) {
        const { status, json } = await post(`${server.url}${path}`, { protocol: PROTOCOL_VERSION });
        assert.equal(status, 401);
        assert.equal((json.error as { code: string }).code, "unauthorized");
      }
    } finally {
      await closeAll([alice, bob]);
      await server.close();
    }
  },
);

testOnEachServerDatabase(
  "verdicts and refusals: stale, drift, 409, 400, 413, 415 — and none of them changed the database",
  memoryStore,
  async (url) => {
    const now = Date.now();
    const server = await startServer(schema, {
      url,
      limits: { maxBodyBytes: 64 * 1024, maxChangesPerPush: 10 },
      maxDrift: 5 * 60_000,
    });
    const push = (changes: unknown[], extra: Record<string, unknown> = {}) =>
      post(`${server.url}/push`, {
        protocol: PROTOCOL_VERSION,
        nodeId: "x",
        schema: schema.hash,
        changes,
        ...extra,
      });
    const change = (
      id: string,
      offset: number,
      data: Record<string, unknown> = { title: "t" },
    ) => ({
      table: "tasks",
      id,
      version: formatHlc({ ms: now + offset, counter: 0, nodeId: "x" }),
      deleted: false,
      data,
    });
    try {
      const first = await push([change("a", 0, { title: "kept" })]);
      assert.equal(first.status, 200);
      assert.deepEqual((first.json.results as { status: string }[]).map((r) => r.status), [
        "applied",
      ]);
      assert.equal(typeof first.json.serverTime, "number");

      const again = await push([
        change("a", 0, { title: "kept" }),
        change("a", -1_000, { title: "older" }),
      ]);
      assert.deepEqual((again.json.results as { status: string }[]).map((r) => r.status), [
        "stale",
        "stale",
      ]);

      const ahead = await push([change("b", 2 * 60_000)]);
      assert.deepEqual(
        (ahead.json.results as { status: string }[]).map((r) => r.status),
        ["applied"],
        "within the server's maxDrift of 5 minutes",
      );
      const drift = await push([change("b", 10 * 60_000)]);
      const [verdict] = drift.json.results as { status: string; code: string; message: string }[];
      assert.equal(verdict?.status, "rejected");
      assert.equal(verdict?.code, "clock_drift");
      assert.match(verdict!.message, /ahead of server time \d+/);

      const cases: [Promise<{ status: number; json: Record<string, unknown> }>, number, string][] =
        [
          [push([change("c", 0)], { protocol: 99 }), 409, "protocol_mismatch"],
          [push([change("c", 0)], { schema: "other" }), 409, "schema_mismatch"],
          [post(`${server.url}/push`, "{not json"), 400, "malformed"],
          [push([change("c", 0, { title: 42 })]), 400, "malformed"],
          [push([change("c", 0, { nope: "x" })]), 400, "malformed"],
          [push([{ ...change("c", 0), table: "settings" }]), 400, "malformed"],
          [push([{ ...change("c", 0), version: "yesterday" }]), 400, "malformed"],
          [push(Array.from({ length: 11 }, (_, i) => change(`many${i}`, 0))), 413, "too_large"],
          [push([change("c", 0, { title: "x".repeat(100_000) })]), 413, "too_large"],
          [
            post(`${server.url}/pull`, {
              protocol: PROTOCOL_VERSION,
              schema: schema.hash,
              cursors: { nope: null },
            }),
            400,
            "malformed",
          ],
          [
            post(`${server.url}/pull`, {
              protocol: PROTOCOL_VERSION,
              schema: schema.hash,
              cursors: { tasks: "x" },
            }),
            400,
            "malformed",
          ],
          [post(`${server.url}/push`, {}), 400, "malformed"],
          [post(`${server.url}/push`, [1, 2]), 400, "malformed"],
        ];
      for (const [request, status, code] of cases) {
        const response = await request;
        assert.equal(response.status, status, JSON.stringify(response.json));
        assert.equal((response.json.error as { code: string }).code, code);
      }
      const typed = await push([change("c", 0, { title: 42 })]);
      const issues = (typed.json.error as { issues: { path: string }[] }).issues;
      assert.ok(
        issues.some((issue) => issue.path === "changes.0.data.title"),
        JSON.stringify(issues),
      );

      const raw = await fetch(`${server.url}/push`, { method: "POST", body: "{}" });
      assert.equal(raw.status, 415);
      const missing = await fetch(`${server.url}/nope`);
      assert.equal(missing.status, 404);

      const pulled = await server.database.pull({ tasks: null }, 100);
      assert.deepEqual(pulled.tasks!.rows.map((r) => [r.id, r.data.title]), [["a", "kept"], [
        "b",
        "t",
      ]]);
    } finally {
      await server.close();
    }
  },
);

testOnEachServerDatabase(
  "bytes, JSON and booleans survive the round trip through the server",
  memoryStore,
  async (url) => {
    const server = await startServer(schema, { url });
    const a = await openClient(schema, server);
    const b = await openClient(schema, server);
    try {
      const file = await a.db.insert("files", {
        name: "logo.png",
        bytes: new Uint8Array([0, 1, 2, 250, 255]),
        meta: { width: 3, tags: ["x"] },
      });
      // No bytes and empty bytes are different values, and stay so.
      const none = await a.db.insert("files", { name: "none", bytes: null, meta: null });
      const empty = await a.db.insert("files", { name: "empty", bytes: new Uint8Array(0) });
      await a.db.insert("notes", { body: "b", pinned: true });
      assert.deepEqual(
        (await a.db.getDirtyRows()).filter((d) => d.table === "files").map((d) => d.data.bytes),
        [new Uint8Array([0, 1, 2, 250, 255]), null, new Uint8Array(0)],
      );
      await a.manager.syncNow();
      await b.manager.syncNow();
      assert.deepEqual(await b.db.get("files", file.system_id), file);
      assert.deepEqual(await b.db.get("files", none.system_id), none);
      assert.deepEqual(await b.db.get("files", empty.system_id), empty);
      assert.equal(none.bytes, null);
      assert.equal((await b.db.all("notes"))[0]?.pinned, true);
    } finally {
      await closeAll([a, b]);
      await server.close();
    }
  },
);

testOnEachServerDatabase(
  "a row the server's database refuses is rejected alone; the rest of its push applies",
  fileStore,
  async (url) => {
    const people = defineSchema({
      people: table({ email: text().notNull() }, { withSystemColumns: true }),
    });
    const server = await startServer(people, { url });
    // A constraint the server's operator added on their own.
    const operator = createClient({ url: url! });
    await operator.execute(`CREATE UNIQUE INDEX people_email ON people (email)`);
    operator.close();
    const a = await openClient(people, server);
    const b = await openClient(people, server);
    try {
      await a.db.insert("people", { email: "ada@example.com" });
      await a.manager.syncNow();
      const [, duplicate] = await b.db.insertMany("people", [
        { email: "bob@example.com" },
        { email: "ada@example.com" },
        { email: "cy@example.com" },
      ]);
      const rejected: string[] = [];
      b.manager.addEventListener("rejected", (e) => {
        for (const row of (e as CustomEvent<{ id: string; code: string }[]>).detail) {
          rejected.push(`${row.id}:${row.code}`);
        }
      });
      await b.manager.syncNow();
      assert.deepEqual(rejected, [`${duplicate!.system_id}:constraint`]);
      assert.equal(await b.db.countDirtyRows(), 0);
      assert.equal(b.manager.status.state, "idle", "the pull that follows is not blocked");
      assert.equal((await b.db.getRejectedRows())[0]?.code, "constraint");
      const onServer = await server.database.pull({ people: null }, 10);
      assert.deepEqual(
        onServer.people!.rows.map((r) => r.data.email).sort(),
        ["ada@example.com", "bob@example.com", "cy@example.com"],
      );
    } finally {
      await closeAll([a, b] as unknown as Client[]);
      await server.close();
    }
  },
);

test("a pull carries every change after the cursor, also those whose version names the puller", async () => {
  const server = await startServer(schema);
  const bob = await openClient(schema, server, { nodeId: "bob-laptop" });
  try {
    await bob.manager.syncNow(); // bob holds a cursor
    // Another client pushes versions that claim to come from bob's node.
    const forged = formatHlc({ ms: Date.now(), counter: 7, nodeId: "bob-laptop" });
    const pushed = await post(`${server.url}/push`, {
      protocol: PROTOCOL_VERSION,
      nodeId: "alice-phone",
      schema: schema.hash,
      changes: [{
        table: "tasks",
        id: "hidden",
        version: forged,
        deleted: false,
        data: { title: "from alice" },
      }],
    });
    assert.equal(pushed.status, 200);
    await bob.manager.syncNow();
    assert.equal((await bob.db.get("tasks", "hidden"))?.title, "from alice");
  } finally {
    await closeAll([bob]);
    await server.close();
  }
});

test("a client is not sent back the rows its own pushes wrote, yet gets every change of others", async () => {
  const server = await startServer(schema);
  const pulled: string[] = [];
  const counting: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (String(input).endsWith("/pull")) {
      const { changes } = await response.clone().json();
      for (
        const [table, page] of Object.entries(changes as Record<string, { rows: { id: string }[] }>)
      ) {
        for (const row of page.rows) pulled.push(`${table}:${row.id}`);
      }
    }
    return response;
  };
  const a = await openClient(schema, server, { nodeId: "a", http: { fetch: counting } });
  const b = await openClient(schema, server, { nodeId: "b" });
  try {
    await a.db.insertMany("tasks", Array.from({ length: 30 }, (_, i) => ({ title: `t${i}` })));
    const second = await a.db.insert("tasks", { title: "second" });
    const note = await a.db.insert("notes", { body: "a's note" });
    await a.manager.syncNow();
    // A column table's row can merge other replicas' columns into a push: it comes back.
    assert.deepEqual(pulled, [`notes:${note.system_id}`], "its own task rows are not sent back");

    pulled.length = 0;
    const fromB = await b.db.insert("tasks", { title: "from b" });
    await b.manager.syncNow();
    await b.db.update("notes", note.system_id, { color: "green" }); // one column of a's note
    await b.db.update("tasks", second.system_id, { done: 1 });
    await b.manager.syncNow();
    await a.manager.syncNow();
    assert.deepEqual(
      pulled.sort(),
      [`notes:${note.system_id}`, `tasks:${fromB.system_id}`, `tasks:${second.system_id}`].sort(),
    );
    assert.equal((await a.db.get("notes", note.system_id))?.color, "green");
    assert.equal((await a.db.get("tasks", second.system_id))?.done, 1);

    // Without the ranges of its pushes (a new process), a replica gets everything.
    const again = await openClient(schema, server, { nodeId: "a" });
    await again.manager.syncNow();
    assert.equal((await again.db.all("tasks")).length, 32);
    await closeAll([again]);
  } finally {
    await closeAll([a, b]);
    await server.close();
  }
});
