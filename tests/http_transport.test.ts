// The pieces of the HTTP transport on their own, where the end-to-end tests
// do not pin them: packing by UTF-8 bytes, blob encoding, held-range merging
// and pruning, postJson's error mapping, the pull envelope, the 413 halving.
// Real Hono apps and real Request/Response objects (a real server on
// 127.0.0.1 where a socket matters), real libSQL.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Hono } from "hono";
import { SyncError } from "../src/errors.ts";
import { createHeldRanges, mergeHeldRanges, pruneHeldRanges } from "../src/held_ranges.ts";
import { postJson } from "../src/http_post.ts";
import { encodeChanges, type EncodedChange, packByBytes, utf8Length } from "../src/http_push.ts";
import { createHttpSync } from "../src/http_sync.ts";
import { formatHlc } from "../src/hlc.ts";
import type { DirtyRow } from "../src/outbox.ts";
import { type HeldRange, MAX_HELD_RANGES, PROTOCOL_VERSION } from "../src/protocol.ts";
import { createPullEnvelopeSchema } from "../src/protocol_schemas.ts";
import { defineSchema, table, text } from "../src/schema.ts";
import { describeTables } from "../src/table_info.ts";
import { toBase64 } from "../src/wire.ts";
import * as v from "valibot";
import { createClient } from "@libsql/client";
import { libsqlAdapter } from "../src/libsql.ts";
import { createSyncServer } from "../server/app.ts";
import { openServerDatabase } from "../server/database.ts";
import { serve } from "../server/serve.ts";
import { syncSchema } from "./fixtures.ts";
import { openMemory } from "./helpers.ts";

/** A Hono app as the transport's `fetch`: real Request and Response objects, no socket. */
function fetchOf(app: { fetch: (request: Request) => Response | Promise<Response> }): typeof fetch {
  return (input, init) => Promise.resolve(app.fetch(new Request(input, init)));
}

const version = (counter: number) => formatHlc({ ms: Date.now(), counter, nodeId: "n1" });

function change(id: string, data: Record<string, unknown>, table = "tasks"): DirtyRow {
  return { table, id, version: version(0), deleted: false, data };
}

/** A change whose JSON text is exactly `json` (the packer reads nothing else). */
const encodedAs = (json: string): EncodedChange => ({ change: change("x", {}), json });

test("utf8Length counts the bytes TextEncoder writes, surrogate pairs as four", () => {
  assert.equal(utf8Length("aé€😀"), 1 + 2 + 3 + 4);
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 200 }), (text) => {
      assert.equal(utf8Length(text), new TextEncoder().encode(text).length);
    }),
  );
});

test("packByBytes cuts by UTF-8 bytes, not by string length", () => {
  // 102 characters but 302 bytes each: by length six would fit in 700, by bytes two.
  const euros = Array.from({ length: 5 }, () => encodedAs(JSON.stringify("€".repeat(100))));
  assert.deepEqual(packByBytes(euros, 700).map((run) => run.length), [2, 2, 1]);
  // A change larger than the budget goes alone, between the runs around it.
  const big = encodedAs(JSON.stringify("x".repeat(1_000)));
  const small = encodedAs("{}");
  assert.deepEqual(
    packByBytes([small, small, big, small], 100).map((run) => run.map((e) => e.json.length)),
    [[2, 2], [1_002], [2]],
  );
});

test("packByBytes keeps order and every run of several changes within the budget", () => {
  fc.assert(
    fc.property(
      fc.array(fc.string({ unit: "binary", maxLength: 60 }), { maxLength: 40 }),
      fc.integer({ min: 1, max: 300 }),
      (texts, budget) => {
        const encoded = texts.map((text) => encodedAs(JSON.stringify(text)));
        const runs = packByBytes(encoded, budget);
        assert.deepEqual(runs.flat(), encoded);
        for (const run of runs) {
          assert.ok(run.length > 0);
          // Each change is followed by a comma (or the closing bracket).
          const bytes = run.reduce((sum, e) => sum + utf8Length(e.json) + 1, 0);
          if (run.length > 1) assert.ok(bytes <= budget, `${bytes} bytes in a run of ${budget}`);
        }
      },
    ),
  );
});

test("encodeChanges turns blobs into base64 in blob tables only, leaving the outbox rows as they are", () => {
  const tables = describeTables(syncSchema.tables);
  const bytes = new Uint8Array([0, 1, 2, 250, 255]);
  const file = change("f1", { name: "a.bin", bytes, meta: null }, "files");
  const task = change("t1", { title: "Ünïcödé", done: 0 });
  const [encodedFile, encodedTask] = encodeChanges([file, task], tables);
  assert.equal(encodedFile!.change, file);
  assert.deepEqual(JSON.parse(encodedFile!.json).data, {
    name: "a.bin",
    bytes: toBase64(bytes),
    meta: null,
  });
  assert.equal(file.data.bytes, bytes, "the DirtyRow still holds its bytes");
  assert.equal(encodedTask!.json, JSON.stringify(task));
});

test("mergeHeldRanges joins overlapping and touching ranges and keeps the newest", () => {
  assert.deepEqual(mergeHeldRanges([[5, 9], [1, 2]], [[3, 4], [8, 12], [20, 20]]), [
    [1, 12],
    [20, 20],
  ]);
  assert.deepEqual(mergeHeldRanges([], [[4, 4], [6, 6]]), [[4, 4], [6, 6]]);
  const many: HeldRange[] = Array.from({ length: MAX_HELD_RANGES + 10 }, (_, i) => [3 * i, 3 * i]);
  const kept = mergeHeldRanges(many, []);
  assert.equal(kept.length, MAX_HELD_RANGES);
  assert.deepEqual(kept[0], [30, 30], "the oldest ten are forgotten");
  assert.deepEqual(kept.at(-1), many.at(-1));
});

test("pruneHeldRanges drops the ranges every cursor has passed", () => {
  const ranges: HeldRange[] = [[1, 4], [6, 8], [10, 12]];
  assert.deepEqual(pruneHeldRanges(ranges, { tasks: "8", notes: "11" }), [[10, 12]]);
  assert.deepEqual(pruneHeldRanges(ranges, { tasks: "7", notes: "11" }), [[6, 8], [10, 12]]);
  assert.deepEqual(pruneHeldRanges(ranges, { tasks: null, notes: "11" }), ranges, "null is 0");
  assert.deepEqual(pruneHeldRanges(ranges, {}), [], "no table pulled, nothing to name");
});

test("the held-range store keeps each database's ranges apart and forgets pruned ones", () => {
  const held = createHeldRanges();
  const a = {};
  const b = {};
  held.record(a, [[1, 3]]);
  held.record(a, [[4, 6]]);
  held.record(b, [[10, 10]]);
  assert.deepEqual(held.forPull(a, { tasks: null }), [[1, 6]]);
  assert.deepEqual(held.forPull(b, { tasks: "2" }), [[10, 10]]);
  assert.deepEqual(held.forPull(a, { tasks: "6" }), []);
  held.record(a, [[2, 3]]);
  assert.deepEqual(held.forPull(a, { tasks: null }), [[2, 3]], "the pruned range stays forgotten");
});

/** An app that answers `POST /answer/<status>` with the request's body as its own. */
function echoApp(): Hono {
  const app = new Hono();
  app.post(
    "/answer/:status",
    async (c) => new Response(await c.req.text(), { status: Number(c.req.param("status")) }),
  );
  return app;
}

test("postJson maps every error answer to a SyncError with the server's code and message", async () => {
  const fetch = fetchOf(echoApp());
  const answer = (code: string, message: string) => JSON.stringify({ error: { code, message } });
  // Status, body, the SyncError's code, what its message says after the status.
  const cases: [number, string, string, string][] = [
    [401, answer("unauthorized", "No token"), "unauthorized", ": unauthorized: No token"],
    [403, answer("forbidden", "Not yours"), "unauthorized", ": forbidden: Not yours"],
    [409, answer("protocol_mismatch", "v2"), "protocol_mismatch", ": protocol_mismatch: v2"],
    [409, answer("schema_mismatch", "abc"), "schema_mismatch", ": schema_mismatch: abc"],
    [409, answer("other", "?"), "protocol_mismatch", ": other: ?"],
    [413, answer("too_large", "Big"), "server_error", ": too_large: Big"],
    [400, answer("malformed", "Bad"), "server_error", ": malformed: Bad"],
    [502, "Bad gateway", "server_error", ""],
    [500, JSON.stringify({ error: null }), "server_error", ""],
  ];
  for (const [status, body, code, said] of cases) {
    const url = `http://sync.test/answer/${status}`;
    const thrown = await postJson(url, body, { fetch, timeout: 5_000 }).then(
      () => assert.fail(`${status} resolved`),
      (error: unknown) => error,
    );
    assert.ok(thrown instanceof SyncError);
    assert.equal(thrown.code, code, body);
    assert.equal(thrown.message, `${url} answered ${status}${said}`);
    const payload = body.startsWith("{") ? JSON.parse(body).error ?? undefined : undefined;
    assert.deepEqual(thrown.details, { status, error: payload });
  }
});

test("postJson returns a 2xx answer's JSON and refuses a non-JSON one", async () => {
  const fetch = fetchOf(echoApp());
  const url = "http://sync.test/answer/200";
  assert.deepEqual(
    await postJson(url, { a: ["é", 1] }, { fetch, timeout: 5_000, headers: { "x-extra": "1" } }),
    { a: ["é", 1] },
  );
  assert.deepEqual(await postJson(url, '{"raw":true}', { fetch, timeout: 5_000 }), { raw: true });
  await assert.rejects(
    postJson(url, "not json", { fetch, timeout: 5_000 }),
    (error: unknown) =>
      error instanceof SyncError && error.code === "server_error" &&
      error.message === `${url} answered with a non-JSON body` && error.details.status === 200,
  );
  // The request is a JSON POST carrying the extra headers.
  let sent: Request | undefined;
  await postJson(url, {}, {
    fetch: (input, init) => fetchOf(echoApp())(sent = new Request(input, init)),
    timeout: 5_000,
    headers: { "x-extra": "1" },
  });
  assert.equal(sent?.method, "POST");
  assert.equal(sent?.headers.get("content-type"), "application/json");
  assert.equal(sent?.headers.get("x-extra"), "1");
});

test("postJson reads the sync server's own error answers back to their codes", async () => {
  const database = await openServerDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema: syncSchema,
  });
  try {
    const app = createSyncServer({
      database,
      authorize: (c) => c.req.header("authorization") === "Bearer ok" ? { id: "u" } : null,
    });
    const options = {
      fetch: fetchOf(app),
      timeout: 5_000,
      headers: { authorization: "Bearer ok" },
    };
    const pull = { protocol: PROTOCOL_VERSION, schema: syncSchema.hash, cursors: { tasks: null } };
    const codeOf = (body: unknown, headers = options.headers) =>
      postJson("http://sync.test/pull", body, { ...options, headers }).then(
        () => "ok",
        (error: SyncError) => `${error.code} ${error.details.status}`,
      );
    assert.equal(await codeOf(pull), "ok");
    assert.equal(await codeOf(pull, { authorization: "Bearer no" }), "unauthorized 401");
    assert.equal(await codeOf({ ...pull, protocol: 99 }), "protocol_mismatch 409");
    assert.equal(await codeOf({ ...pull, schema: "other" }), "schema_mismatch 409");
    assert.equal(await codeOf({ ...pull, cursors: 5 }), "server_error 400");
  } finally {
    await database.close();
  }
});

test("postJson reports no answer as offline: a refused connection and a timeout", async () => {
  const app = new Hono();
  app.post("/slow", async (c) => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return c.json({});
  });
  const server = await serve(app.fetch);
  const options = { fetch: globalThis.fetch, timeout: 30 };
  try {
    await assert.rejects(
      postJson(`${server.url}/slow`, {}, options),
      (error: unknown) =>
        error instanceof SyncError && error.code === "offline" &&
        error.message.startsWith(`Cannot reach ${server.url}/slow: `),
    );
  } finally {
    await server.close();
  }
  await assert.rejects(
    postJson(`${server.url}/slow`, {}, { ...options, timeout: 5_000 }),
    (error: unknown) => error instanceof SyncError && error.code === "offline",
  );
});

test("the pull envelope schema reads every own table key and passes pages through uncopied", () => {
  const schema = createPullEnvelopeSchema();
  const page = { rows: [{ any: "thing" }], cursor: "3", hasMore: false };
  const input = JSON.parse(
    JSON.stringify({ changes: { constructor: page, prototype: page }, serverTime: 1 }),
  );
  const checked = v.safeParse(schema, input);
  assert.ok(checked.success);
  assert.deepEqual(Object.keys(checked.output.changes), ["constructor", "prototype"]);
  assert.equal(checked.output.changes.constructor, input.changes.constructor);
  for (
    const bad of [
      { changes: { tasks: { rows: [], cursor: null } }, serverTime: 1 },
      { changes: { tasks: { rows: "x", cursor: null, hasMore: false } }, serverTime: 1 },
      { changes: { tasks: { rows: [], cursor: 3, hasMore: false } }, serverTime: 1 },
      { changes: [], serverTime: 1 },
      { changes: {} },
      null,
    ]
  ) {
    assert.equal(v.safeParse(schema, bad).success, false, JSON.stringify(bad));
  }
});

test("onFetch refuses a malformed envelope as server_error and applies nothing", async () => {
  const db = await openMemory({ schema: syncSchema });
  try {
    const stamp = version(0);
    const row = { id: "r1", version: stamp, createdAt: stamp, deleted: false };
    let answer: unknown;
    const app = new Hono();
    app.post("/pull", (c) => c.json(answer));
    const http = createHttpSync({ url: "http://sync.test/", fetch: fetchOf(app) });
    for (
      answer of [
        {
          changes: { tasks: { rows: [{ ...row, data: { title: "a" } }], cursor: "1" } },
          serverTime: 1,
        },
        { changes: "none", serverTime: 1 },
        { changes: { files: { rows: [null], cursor: "1", hasMore: false } }, serverTime: 1 },
      ]
    ) {
      await assert.rejects(
        http.onFetch(db, { tasks: null }),
        (error: unknown) => error instanceof SyncError && error.code === "server_error",
        JSON.stringify(answer),
      );
    }
    assert.deepEqual(await db.all("tasks"), []);
    assert.deepEqual((await db.getCursors()).tasks, null);
  } finally {
    await db.close();
  }
});

test("onFetch applies a page of a table named constructor", async () => {
  const schema = defineSchema({
    constructor: table({ title: text() }, { withSystemColumns: true }),
  });
  const db = await openMemory({ schema });
  try {
    const stamp = version(0);
    const row = { id: "r1", version: stamp, createdAt: stamp, deleted: false };
    const app = new Hono();
    app.post("/pull", (c) =>
      c.json({
        changes: {
          constructor: { rows: [{ ...row, data: { title: "a" } }], cursor: "1", hasMore: false },
        },
        serverTime: 1,
      }));
    const http = createHttpSync({ url: "http://sync.test", fetch: fetchOf(app) });
    assert.deepEqual(await http.onFetch(db, { constructor: null }), { hasMore: false });
    assert.deepEqual((await db.all("constructor")).map((r) => r.title), ["a"]);
  } finally {
    await db.close();
  }
});

test("onSend halves a push the server finds too large, down to the one change it refuses", async () => {
  const db = await openMemory({ schema: syncSchema });
  try {
    const sizes: number[] = [];
    const heldAsked: unknown[] = [];
    let sequence = 0;
    const app = new Hono();
    app.post("/push", async (c) => {
      const body = await c.req.text();
      const { changes } = JSON.parse(body) as { changes: DirtyRow[] };
      sizes.push(changes.length);
      if (new TextEncoder().encode(body).length > 2_000) {
        return c.json({ error: { code: "too_large", message: "Body too large" } }, 413);
      }
      const first = sequence + 1;
      sequence += changes.length;
      return c.json({
        results: changes.map((ch) => ({ table: ch.table, id: ch.id, status: "applied" })),
        held: [[first, sequence]],
        serverTime: 1,
      });
    });
    app.post("/pull", async (c) => {
      heldAsked.push((await c.req.json()).held);
      return c.json({
        changes: { tasks: { rows: [], cursor: "9", hasMore: false } },
        serverTime: 1,
      });
    });
    const http = createHttpSync({ url: "http://sync.test", fetch: fetchOf(app) });
    const changes = [
      change("a", { title: "a" }),
      change("b", { title: "€".repeat(1_000) }), // 3,000 bytes: refused alone
      change("c", { title: "c" }),
      change("d", { title: "d" }),
    ];
    const results = await http.onSend(changes, db);
    assert.deepEqual(sizes, [4, 2, 1, 1, 2]);
    assert.deepEqual(results.map((r) => [r.id, r.status, r.code]), [
      ["a", "applied", undefined],
      ["b", "rejected", "too_large"],
      ["c", "applied", undefined],
      ["d", "applied", undefined],
    ]);
    assert.match(results[1]!.message!, /answered 413: too_large: Body too large/);
    // What the pushes were given, the next pull names (joined).
    await http.onFetch(db, { tasks: null });
    assert.deepEqual(heldAsked, [[[1, 3]]]);
  } finally {
    await db.close();
  }
});
