// What a hostile or broken client could do to the endpoint, and what the
// endpoint does instead: one test per hole an adversarial review found. Real
// servers on 127.0.0.1, real libSQL, real HTTP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import fc from "fast-check";
import { openDatabase } from "../src/database.ts";
import { createHttpSync } from "../src/http_sync.ts";
import { SyncError } from "../src/errors.ts";
import { formatHlc } from "../src/hlc.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import { blob, boolean, defineSchema, integer, json, real, table, text } from "../src/schema.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import { toBase64 } from "../src/wire.ts";
import { syncSchema as schema } from "./fixtures.ts";
import { openMemory, tempDir } from "./helpers.ts";
import { bearer, openClient, post, startServer, type TestClient } from "./sync_helpers.ts";

type Client = TestClient<typeof schema.tables>;

/** Every column kind, for the exact round trip. */
const valuesSchema = defineSchema({
  samples: table({
    r: real(),
    n: integer(),
    t: text(),
    b: blob(),
    j: json(),
    flag: boolean(),
  }, { withSystemColumns: true }),
  cells: table({ r: real(), t: text() }, { withSystemColumns: true, lww: "column" }),
});

const version = (offset = 0, nodeId = "hostile") =>
  formatHlc({ ms: Date.now() + offset, counter: 0, nodeId });

const push = (url: string, changes: unknown[], headers: Record<string, string> = {}) =>
  post(`${url}/push`, {
    protocol: PROTOCOL_VERSION,
    nodeId: "hostile",
    schema: schema.hash,
    changes,
  }, headers);

const pull = (
  url: string,
  cursors: Record<string, unknown>,
  headers: Record<string, string> = {},
) => post(`${url}/pull`, { protocol: PROTOCOL_VERSION, schema: schema.hash, cursors }, headers);

const task = (id: string, data: Record<string, unknown>, v = version()) => ({
  table: "tasks",
  id,
  version: v,
  deleted: false,
  data,
});

type Results = { status: string; code?: string; id: string }[];

// deno-lint-ignore no-explicit-any
async function closeAll(clients: TestClient<any>[]) {
  for (const client of clients) {
    await client.manager.stop();
    await client.db.close();
  }
}

/** A raw HTTP/1.1 exchange over a socket: the status line of the answer, or "closed". */
function rawRequest(url: string, request: string, keepOpenMs = 0): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let answer = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to a raw request within 10 s: ${JSON.stringify(answer)}`));
    }, 10_000);
    socket.on("connect", () => {
      socket.write(request);
      if (keepOpenMs === 0) socket.end();
    });
    socket.on("data", (chunk) => {
      answer += chunk;
      if (/\r\n\r\n/.test(answer)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(answer.split("\r\n")[0]!);
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(answer === "" ? "closed" : answer.split("\r\n")[0]!);
    });
  });
}

test("lone surrogates are refused at the door and by the local API, and the server keeps serving", async () => {
  const server = await startServer(schema);
  try {
    const { status, json } = await push(server.url, [
      task("t", { title: "\ud800" }),
      task("\udfff-id", { title: "fine" }),
      task("stale-neighbour", { title: "ok" }, version(-1000)),
      {
        table: "files",
        id: "f",
        version: version(),
        deleted: false,
        data: { name: "n", meta: { "\ud800": 1 } },
      },
    ]);
    assert.equal(status, 200);
    const results = json.results as Results;
    assert.deepEqual(results.map((r) => [r.status, r.code]), [
      ["rejected", "invalid_value"],
      ["rejected", "invalid_value"],
      ["applied", undefined],
      ["rejected", "invalid_value"],
    ]);
    const pulled = await pull(server.url, { tasks: null, files: null });
    assert.equal(pulled.status, 200);
    const rows = (pulled.json.changes as Record<string, { rows: { id: string }[] }>).tasks!.rows;
    assert.deepEqual(rows.map((r) => r.id), ["stale-neighbour"]);
  } finally {
    await server.close();
  }

  const db = await openMemory({ schema });
  for (
    const write of [
      () => db.insert("tasks", { title: "a\udc00b" }),
      () => db.insert("tasks", { system_id: "x\ud800", title: "t" } as never),
      () => db.insert("files", { name: "n", meta: { nested: ["\ud83d"] } }),
    ]
  ) {
    await assert.rejects(write(), (e) => e instanceof SyncError && e.code === "invalid_value");
  }
  assert.equal(await db.countDirtyRows(), 0);
  await db.close();
});

test("a row id with a NUL or another control character is refused; a scope is never crossed", async () => {
  const dir = tempDir();
  const url = `file:${join(dir.path, "server.db")}`;
  const server = await startServer(schema, { url, authorize: bearer({ a: "alice", b: "bob" }) });
  const alice = { authorization: "Bearer a" };
  const bob = { authorization: "Bearer b" };
  const todo = (id: string, owner: string, title: string) => ({
    table: "todos",
    id,
    version: version(),
    deleted: false,
    data: { owner, title },
  });
  try {
    for (const id of ["bob-nul\u0000X", "tab\there", "del\u007f", "c1\u0085"]) {
      const { json } = await push(server.url, [todo(id, "bob", "b")], bob);
      assert.deepEqual((json.results as Results).map((r) => r.code), ["invalid_value"], id);
    }
    // A row stored before the alphabet existed (raw SQL) keeps its owner.
    const raw = createClient({ url });
    await raw.execute({
      sql: `INSERT INTO todos (owner, title, system_id, system_version, system_created_at, ` +
        `system_seq) VALUES ('bob', 'bob''s', ?, ?, ?, 1000)`,
      args: ["bob-nul\u0000X", version(-5000), version(-5000)],
    });
    const { json } = await push(server.url, [todo("bob-nul\u0000X", "alice", "mine now")], alice);
    assert.equal((json.results as Results)[0]!.status, "rejected");
    const stored = await raw.execute(`SELECT owner, title FROM todos`);
    assert.deepEqual(stored.rows.map((r) => [r.owner, r.title]), [["bob", "bob's"]]);
    const page = await pull(server.url, { todos: null }, alice);
    assert.deepEqual((page.json.changes as Record<string, { rows: unknown[] }>).todos!.rows, []);
    raw.close();

    // The UPSERT itself refuses to move a stored row to another scope.
    await push(server.url, [todo("shared", "bob", "bob's")], bob);
    const results = await server.database.push([{
      table: "todos",
      id: "shared",
      version: version(10),
      deleted: false,
      data: { owner: "alice", title: "taken" },
    }], { principal: { id: "alice" } });
    assert.equal(results[0]!.status, "rejected");
    const bobs = await pull(server.url, { todos: null }, bob);
    const rows = (bobs.json.changes as Record<string, { rows: { data: { title: string } }[] }>)
      .todos!.rows;
    assert.deepEqual(rows.map((r) => r.data.title), ["bob's", "bob's"], "nothing was taken");
  } finally {
    await server.close();
    dir.cleanup();
  }
});

test("a replica restored from an older copy of its file gets back what it had pushed, and its clock moves past it", async () => {
  const dir = tempDir();
  const server = await startServer(schema);
  const path = join(dir.path, "client.db");
  const open = async () => {
    const db = await openDatabase({
      adapter: libsqlAdapter(createClient({ url: `file:${path}` })),
      schema,
      nodeId: "restored",
    });
    const manager = new ServerSyncManager({ database: db, ...createHttpSync({ url: server.url }) });
    return { db, manager };
  };
  try {
    let { db, manager } = await open();
    await db.insert("tasks", { title: "before the copy" });
    await manager.syncNow();
    await db.close();
    copyFileSync(path, `${path}.copy`);

    ({ db, manager } = await open());
    const later = await db.insert("tasks", { title: "after the copy" });
    const note = await db.insert("notes", { body: "after the copy" });
    await manager.syncNow();
    await db.close();

    copyFileSync(`${path}.copy`, path);
    rmSync(`${path}-wal`, { force: true });
    rmSync(`${path}-shm`, { force: true });
    ({ db, manager } = await open());
    assert.equal(await db.get("tasks", later.system_id), undefined, "the copy predates the write");
    await manager.syncNow();
    assert.equal((await db.get("tasks", later.system_id))?.title, "after the copy");
    assert.equal((await db.get("notes", note.system_id))?.body, "after the copy");
    assert.ok(db.hlc.last > note.system_version, "the clock is past every version it issued");
    assert.ok(db.hlc.now() > note.system_version);
    await db.close();
  } finally {
    await server.close();
    dir.cleanup();
  }
});

test("every value comes back exactly from another replica: reals, safe integers, text, blobs, json, booleans, NULL", async () => {
  const server = await startServer(valuesSchema);
  const [a, b] = await Promise.all([
    openClient(valuesSchema, server),
    openClient(valuesSchema, server),
  ]);
  // -0 has no JSON form: it travels as 0, as everywhere in JSON.
  const real = fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => x === 0 ? 0 : x);
  const safe = fc.oneof(fc.maxSafeInteger(), fc.constantFrom(2 ** 53 - 1, -(2 ** 53 - 1), 0));
  const text = fc.string({ unit: "grapheme", maxLength: 30 });
  const jsonValue = fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.parse(JSON.stringify(value)));
  const nullable = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: null });
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            r: nullable(real),
            n: nullable(safe),
            t: nullable(text),
            b: nullable(fc.uint8Array({ maxLength: 64 })),
            j: nullable(jsonValue),
            flag: nullable(fc.boolean()),
          }),
          { minLength: 1, maxLength: 20 },
        ),
        async (values) => {
          const samples = await a.db.insertMany("samples", values as never);
          const cells = [];
          for (const v of values) {
            const cell = await a.db.insert("cells", { r: v.r, t: v.t });
            cells.push(
              await a.db.update("cells", cell.system_id, { r: v.r === null ? 1.5 : -v.r }),
            );
          }
          await a.manager.syncNow();
          await b.manager.syncNow();
          for (const row of samples) {
            assert.deepEqual(await b.db.get("samples", row.system_id), row);
          }
          for (const row of cells) assert.deepEqual(await b.db.get("cells", row.system_id), row);
        },
      ),
      { seed: 7, numRuns: 25 },
    );
  } finally {
    await closeAll([a, b]);
    await server.close();
  }
});

test("reals written on one replica come back bit for bit on another (the review's values)", async () => {
  const server = await startServer(valuesSchema);
  const [a, b] = await Promise.all([
    openClient(valuesSchema, server),
    openClient(valuesSchema, server),
  ]);
  try {
    const values = [0.30000000000000004, 123456789.12345679, 5e-324, 1.7976931348623157e308, -1e-7];
    const random = fc.sample(fc.double({ noNaN: true, noDefaultInfinity: true }), {
      seed: 3,
      numRuns: 2_000,
    });
    const rows = await a.db.insertMany(
      "samples",
      [...values, ...random].map((r) => ({ r: r === 0 ? 0 : r })),
    );
    await a.manager.syncNow();
    await b.manager.syncNow();
    const stored = new Map(
      (await b.db.all("samples")).map((row) => [row.system_id, row.r]),
    );
    for (const row of rows) assert.equal(stored.get(row.system_id), row.r, String(row.r));
  } finally {
    await closeAll([a, b]);
    await server.close();
  }
});

test("blobs: a base64 look-alike is rejected alone, a 3.2 MiB blob syncs, one too large for the server is rejected without blocking the rest", async () => {
  const server = await startServer(schema);
  try {
    const file = (id: string, bytes: string) => ({
      table: "files",
      id,
      version: version(),
      deleted: false,
      data: { name: id, bytes },
    });
    const { status, json } = await push(server.url, [
      file("long-s", "ſſſſ"),
      file("kelvin", "\u212a\u212a\u212a\u212a"),
      file("fine", toBase64(new Uint8Array([1, 2, 3]))),
    ]);
    assert.equal(status, 200);
    assert.deepEqual((json.results as Results).map((r) => r.code ?? r.status), [
      "invalid_value",
      "invalid_value",
      "applied",
    ]);

    const [a, b] = await Promise.all([openClient(schema, server), openClient(schema, server)]);
    try {
      const big = new Uint8Array(3.2 * 1024 * 1024).map((_, i) => i % 251);
      const huge = new Uint8Array(9 * 1024 * 1024);
      const before = await a.db.insert("tasks", { title: "before" });
      const bigRow = await a.db.insert("files", { name: "big", bytes: big });
      const hugeRow = await a.db.insert("files", { name: "huge", bytes: huge });
      const after = await a.db.insert("tasks", { title: "after" });
      await a.manager.syncNow();
      assert.equal(await a.db.countDirtyRows(), 0);
      const rejected = await a.db.getRejectedRows();
      assert.deepEqual(rejected.map((r) => [r.id, r.code]), [[hugeRow.system_id, "too_large"]]);
      await b.manager.syncNow();
      assert.deepEqual((await b.db.get("files", bigRow.system_id))?.bytes, big);
      assert.ok(await b.db.get("tasks", before.system_id));
      assert.ok(await b.db.get("tasks", after.system_id));
    } finally {
      await closeAll([a, b]);
    }
  } finally {
    await server.close();
  }
});

test("json deeper than the bound is refused at the door and by the local API", async () => {
  let deep: unknown = 1;
  for (let i = 0; i < 1_001; i++) deep = [deep];
  const server = await startServer(schema);
  try {
    const { json } = await push(server.url, [{
      table: "files",
      id: "deep",
      version: version(),
      deleted: false,
      data: { name: "deep", meta: { deep } },
    }]);
    assert.deepEqual((json.results as Results).map((r) => r.code), ["invalid_value"]);
    assert.equal((await pull(server.url, { files: null })).status, 200);
  } finally {
    await server.close();
  }
  const db = await openMemory({ schema });
  await assert.rejects(
    db.insert("files", { name: "deep", meta: { deep } as never }),
    (e) => e instanceof SyncError && e.code === "invalid_value" && /deeper/.test(e.message),
  );
  await db.close();
});

test("pull pages stop at a byte budget, with hasMore, and always carry at least one row", async () => {
  const server = await startServer(schema, { limits: { maxPullBytes: 100_000 } });
  try {
    const rows = Array.from(
      { length: 12 },
      (_, i) => task(`r${String(i).padStart(2, "0")}`, { title: "x".repeat(30_000) }),
    );
    rows.push(task("r99", { title: "y".repeat(250_000) }), task("z", { title: "small" }));
    assert.equal((await push(server.url, rows)).status, 200);
    const seen: string[] = [];
    let cursor: unknown = null;
    for (let page = 0; page < 30; page++) {
      const { status, json } = await pull(server.url, { tasks: cursor });
      assert.equal(status, 200);
      const tasks = (json.changes as Record<
        string,
        { rows: { id: string }[]; cursor: string; hasMore: boolean }
      >)
        .tasks!;
      assert.ok(tasks.rows.length >= 1, "a page with rows left carries at least one");
      const bytes = JSON.stringify(tasks.rows).length;
      assert.ok(tasks.rows.length === 1 || bytes < 100_000 + 31_000, `page of ${bytes} bytes`);
      seen.push(...tasks.rows.map((r) => r.id));
      cursor = tasks.cursor;
      if (!tasks.hasMore) break;
    }
    assert.deepEqual(seen, rows.map((r) => r.id));
  } finally {
    await server.close();
  }
});

test("wrong statuses: deep nesting, broken bodies, content types, arrays for objects, prototype keys", async () => {
  const odd = defineSchema({
    constructor: table({ toString: text(), valueOf: integer() }, { withSystemColumns: true }),
    tasks: table({ title: text() }, { withSystemColumns: true }),
  });
  const server = await startServer(odd);
  const send = (path: string, body: string, contentType = "application/json") =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { "content-type": contentType },
      body,
    }).then(async (r) => ({ status: r.status, json: await r.json() }));
  const head = { protocol: PROTOCOL_VERSION, schema: odd.hash };
  try {
    const deep = `{"protocol":${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    const answer = await send("/push", deep);
    assert.ok(answer.status === 400 || answer.status === 409, String(answer.status));
    assert.equal(typeof answer.json.error.code, "string");

    assert.equal((await send("/push", "{}", "application/json-seq")).status, 415);
    assert.equal((await send("/pull", "{}", "text/plain")).status, 415);
    assert.equal(
      (await send("/pull", JSON.stringify(head), "Application/JSON; charset=utf-8")).status,
      400,
    );
    assert.equal((await send("/pull", "\xff\xfe")).status, 400);
    assert.equal((await send("/pull", JSON.stringify({ ...head, cursors: [] }))).status, 400);
    const change = (data: unknown) => ({
      ...head,
      nodeId: "n",
      changes: [{ table: "tasks", id: "a", version: version(), deleted: false, data }],
    });
    assert.equal((await send("/push", JSON.stringify(change([])))).status, 400);
    for (const key of ["__proto__", "prototype", "constructor"]) {
      const body = `{"protocol":1,"schema":${JSON.stringify(odd.hash)},"cursors":{"${key}":null}}`;
      const { status, json } = await send("/pull", body);
      if (key === "constructor") {
        assert.equal(status, 200, JSON.stringify(json));
        assert.deepEqual(Object.keys(json.changes), ["constructor"]);
      } else {
        assert.equal(status, 400, `${key}: ${JSON.stringify(json)}`);
      }
    }
    const partial = await send(
      "/push",
      JSON.stringify({
        ...head,
        nodeId: "n",
        changes: [
          {
            table: "constructor",
            id: "c",
            version: version(),
            deleted: false,
            data: { valueOf: 2 },
          },
          { table: "constructor", id: "d", version: version(), deleted: false, data: {} },
        ],
      }),
    );
    assert.equal(partial.status, 200, JSON.stringify(partial.json));
    assert.deepEqual(partial.json.results.map((r: { status: string }) => r.status), [
      "applied",
      "applied",
    ]);
    const chunked = await rawRequest(
      server.url,
      `POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Transfer-Encoding: chunked\r\n\r\nzz\r\n{"protocol":1}\r\n0\r\n\r\n`,
    );
    assert.doesNotMatch(chunked, / 5\d\d /, chunked);
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
  } finally {
    await server.close();
  }
});

test("authorize runs before the body is read: an unauthenticated upload is refused at once", async () => {
  const server = await startServer(schema, { authorize: bearer({ a: "alice" }) });
  try {
    // A chunked upload that never ends: only the headers can be judged.
    const status = await rawRequest(
      server.url,
      `POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Transfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n`,
      5_000,
    );
    assert.match(status, / 401 /);
  } finally {
    await server.close();
  }
});

test("verdicts say what happened: duplicate ids in one push, and a push of stale rows leaves the sequence", async () => {
  const dir = tempDir();
  const url = `file:${join(dir.path, "server.db")}`;
  const server = await startServer(schema, { url });
  const raw = createClient({ url });
  const sequence = async () =>
    (await raw.execute(`SELECT value FROM _sync_meta WHERE key = 'sequence'`)).rows[0]?.value;
  try {
    const newer = version(0, "n");
    const older = version(-1000, "n");
    const { json } = await push(server.url, [
      task("dup", { title: "newer" }, newer),
      task("dup", { title: "older" }, older),
    ]);
    assert.deepEqual((json.results as Results).map((r) => r.status), ["applied", "stale"]);
    const before = await sequence();
    const again = await push(server.url, [task("dup", { title: "older" }, older)]);
    assert.deepEqual((again.json.results as Results).map((r) => r.status), ["stale"]);
    assert.equal(
      await sequence(),
      before,
      "a push that applied nothing does not move the sequence",
    );
    const rows = await raw.execute(`SELECT title FROM tasks`);
    assert.deepEqual(rows.rows.map((r) => r.title), ["newer"]);
  } finally {
    raw.close();
    await server.close();
    dir.cleanup();
  }
});

test("system columns agree on every replica: an empty update stamps nothing, the creation version travels", async () => {
  const server = await startServer(schema);
  const [a, b] = await Promise.all([openClient(schema, server), openClient(schema, server)]);
  try {
    const note = await a.db.insert("notes", { body: "n" });
    await a.manager.syncNow();
    const same = await a.db.update("notes", note.system_id, {});
    const alsoSame = await a.db.update("notes", note.system_id, { body: undefined });
    assert.deepEqual(same, note);
    assert.deepEqual(alsoSame, note);
    assert.equal(await a.db.countDirtyRows(), 0);

    // Inserted and updated offline: one push, at the update's version.
    const t = await a.db.insert("tasks", { title: "t" });
    await a.db.update("tasks", t.system_id, { done: 1 });
    const n = await a.db.insert("notes", { body: "x" });
    await a.db.update("notes", n.system_id, { color: "red" });
    await a.manager.syncNow();
    await b.manager.syncNow();
    await a.manager.syncNow();
    for (const table of ["tasks", "notes"] as const) {
      const mine = await a.db.query(`SELECT * FROM ${table} ORDER BY system_id`);
      const theirs = await b.db.query(`SELECT * FROM ${table} ORDER BY system_id`);
      assert.deepEqual(theirs, mine, table);
    }
    assert.equal((await b.db.get("tasks", t.system_id))?.system_created_at, t.system_created_at);
  } finally {
    await closeAll([a, b]);
    await server.close();
  }
});

test("syncNow sends a write made while a background sync runs", async () => {
  const server = await startServer(schema);
  let releaseFirst: () => void = () => undefined;
  const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
  let sends = 0;
  const client = await openClient(schema, server, {
    http: {
      fetch: async (input, init) => {
        if (String(input).endsWith("/push") && sends++ === 0) await firstHeld;
        return fetch(input, init);
      },
    },
  });
  try {
    await client.db.insert("tasks", { title: "first" });
    const background = client.manager.syncNow();
    while (sends === 0) await new Promise((r) => setTimeout(r, 5));
    await client.db.insert("tasks", { title: "during the sync" });
    const now = client.manager.syncNow();
    releaseFirst();
    await background;
    await now;
    assert.equal(await client.db.countDirtyRows(), 0);
  } finally {
    await closeAll([client]);
    await server.close();
  }
});

test("a column table never stores an empty column version; one row changed twice in a push keeps both verdicts honest", async () => {
  const server = await startServer(schema);
  const [a] = await Promise.all([openClient(schema, server)]);
  const note = (
    id: string,
    v: string,
    data: Record<string, unknown>,
    cv: Record<string, string>,
    deleted = false,
  ) => ({
    table: "notes",
    id,
    version: v,
    deleted,
    data,
    columnVersions: cv,
  });
  try {
    const v1 = version(-2000, "w");
    const v2 = version(-1000, "w");
    await push(server.url, [note("n1", v1, { body: "a" }, { body: v1 })]);
    await push(server.url, [note("n1", v2, { body: "b" }, { body: v2 })]);
    const t = version(-500, "w");
    const later = version(0, "w");
    const { json } = await push(server.url, [
      note("twice", t, { body: "x" }, { body: version(-600, "w"), is_deleted: t }, true),
      note("twice", later, { pinned: true }, { pinned: later }),
    ]);
    assert.deepEqual((json.results as Results).map((r) => r.status), ["applied", "applied"]);
    await a.manager.syncNow(); // a client can merge what the server sends
    const stored = await a.db.query(
      `SELECT system_id, system_column_versions AS cv, is_deleted FROM notes ORDER BY system_id`,
    );
    for (const row of stored) {
      const versions = JSON.parse(String(row.cv)) as Record<string, string>;
      assert.ok(Object.values(versions).every((v) => v !== ""), JSON.stringify(versions));
    }
    assert.deepEqual(stored.map((r) => [r.system_id, r.is_deleted]), [["n1", 0], ["twice", 1]]);
  } finally {
    await closeAll([a]);
    await server.close();
  }
});
