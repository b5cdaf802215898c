// Every documented status of the sync endpoint, through Hono's `app.request()`
// (no socket): the same verdicts and refusals tests/sync_e2e.test.ts checks
// over real HTTP, here also for the cases a socket client cannot easily send
// (a body without Content-Length, bytes that are not UTF-8, a Content-Length
// that announces more than the limit). Every error is `{ error: { code,
// message } }` whose code maps to the answered status in ERROR_STATUS, the
// one table both ends of the wire read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "@libsql/client";
import { HTTPException } from "hono/http-exception";
import { createSyncServer, openServerDatabase, type ServerDatabase } from "../server/mod.ts";
import { formatHlc } from "../src/hlc.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import { ERROR_STATUS, isWireErrorCode } from "../src/wire_errors.ts";
import { syncSchema as schema } from "./fixtures.ts";
import { manualClock } from "./helpers.ts";

type App = ReturnType<typeof createSyncServer>;
type Answer = { status: number; json: Record<string, unknown> };

const MAX_BODY_BYTES = 64 * 1024;

/** An endpoint over a fresh libSQL `:memory:` database with a clock under the test's control. */
async function openEndpoint(
  authorize?: Parameters<typeof createSyncServer>[0]["authorize"],
): Promise<{ app: App; database: ServerDatabase; now: () => number }> {
  const clock = manualClock();
  const database = await openServerDatabase({
    adapter: libsqlAdapter(createClient({ url: ":memory:" })),
    schema,
    now: clock.now,
  });
  const app = createSyncServer({
    database,
    authorize,
    limits: { maxBodyBytes: MAX_BODY_BYTES, maxChangesPerPush: 10 },
    maxDrift: 5 * 60_000,
  });
  return { app, database, now: clock.now };
}

/** POSTs `body` (JSON-encoded unless it is a string or bytes) through `app.request`. */
async function post(
  app: App,
  path: string,
  body: unknown,
  headers: Record<string, string> = { "content-type": "application/json" },
): Promise<Answer> {
  const raw: BodyInit = typeof body === "string"
    ? body
    : body instanceof Uint8Array
    ? body as Uint8Array<ArrayBuffer> // bytes as they are: the not-UTF-8 case
    : JSON.stringify(body);
  const response = await app.request(path, { method: "POST", headers, body: raw });
  return { status: response.status, json: await response.json() };
}

/**
 * `answer` is the endpoint's error shape, with `code` and the status
 * ERROR_STATUS gives it; `why` names the case in a failure.
 */
function assertError(answer: Answer, status: number, code: string, why = ""): void {
  const said = `${why}: ${JSON.stringify(answer.json)}`;
  assert.equal(answer.status, status, said);
  assert.deepEqual(Object.keys(answer.json), ["error"], said);
  const error = answer.json.error as Record<string, unknown>;
  assert.equal(error.code, code, said);
  assert.equal(typeof error.message, "string", said);
  assert.ok(Object.keys(error).every((key) => ["code", "message", "issues"].includes(key)), said);
  assert.ok(isWireErrorCode(error.code), said);
  assert.equal(ERROR_STATUS[error.code], status, said);
}

/** The push and change builders the cases share, stamped from the server's clock. */
function requests(app: App, now: () => number) {
  const push = (changes: unknown[], extra: Record<string, unknown> = {}): Promise<Answer> =>
    post(app, "/push", {
      protocol: PROTOCOL_VERSION,
      nodeId: "x",
      schema: schema.hash,
      changes,
      ...extra,
    });
  const change = (id: string, offset: number, data: Record<string, unknown> = { title: "t" }) => ({
    table: "tasks",
    id,
    version: formatHlc({ ms: now() + offset, counter: 0, nodeId: "x" }),
    deleted: false,
    data,
  });
  const pull = (cursors: unknown): Promise<Answer> =>
    post(app, "/pull", { protocol: PROTOCOL_VERSION, schema: schema.hash, cursors });
  return { push, change, pull };
}

const statuses = (answer: Answer): string[] =>
  (answer.json.results as { status: string }[]).map((r) => r.status);

test("app.request: push, pull and health answer 200; stale and drifting rows are verdicts, not errors", async () => {
  const { app, database, now } = await openEndpoint();
  const { push, change, pull } = requests(app, now);
  try {
    const first = await push([change("a", 0, { title: "kept" })]);
    assert.equal(first.status, 200, JSON.stringify(first.json));
    assert.deepEqual(statuses(first), ["applied"]);
    assert.equal(first.json.serverTime, now());

    const again = await push([
      change("a", 0, { title: "kept" }),
      change("a", -1_000, { title: "older" }),
    ]);
    assert.equal(again.status, 200);
    assert.deepEqual(statuses(again), ["stale", "stale"]);

    const ahead = await push([change("b", 2 * 60_000)]);
    assert.deepEqual(statuses(ahead), ["applied"], "within the server's maxDrift of 5 minutes");
    const drift = await push([change("b", 10 * 60_000)]);
    assert.equal(drift.status, 200);
    const [verdict] = drift.json.results as { status: string; code: string; message: string }[];
    assert.equal(verdict?.status, "rejected");
    assert.equal(verdict?.code, "clock_drift");
    assert.match(verdict!.message, /ahead of server time \d+/);

    const pulled = await pull({ tasks: null });
    assert.equal(pulled.status, 200, JSON.stringify(pulled.json));
    const page = (pulled.json.changes as Record<string, { rows: { id: string }[] }>).tasks;
    assert.deepEqual(page?.rows.map((r) => r.id), ["a", "b"]);
    assert.equal(pulled.json.serverTime, now());

    const health = await app.request("/health");
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), {
      ok: true,
      protocol: PROTOCOL_VERSION,
      schema: schema.hash,
      serverTime: now(),
    });
  } finally {
    await database.close();
  }
});

test("app.request: every refusal answers its documented status and code, and changes nothing", async () => {
  const { app, database, now } = await openEndpoint();
  const { push, change, pull } = requests(app, now);
  const utf8 = new TextEncoder();
  const notUtf8 = new Uint8Array([
    ...utf8.encode(`{"protocol":${PROTOCOL_VERSION},"schema":"`),
    0xff,
    ...utf8.encode(`"}`),
  ]);
  try {
    assert.deepEqual(statuses(await push([change("a", 0, { title: "kept" })])), ["applied"]);
    const cases: [string, () => Promise<Answer>, number, string][] = [
      [
        "another protocol",
        () => push([change("c", 0)], { protocol: 99 }),
        409,
        "protocol_mismatch",
      ],
      ["another schema", () => push([change("c", 0)], { schema: "other" }), 409, "schema_mismatch"],
      ["not JSON", () => post(app, "/push", "{not json"), 400, "malformed"],
      ["not UTF-8", () => post(app, "/push", notUtf8), 400, "malformed"],
      ["a value of the wrong type", () => push([change("c", 0, { title: 42 })]), 400, "malformed"],
      ["an unknown column", () => push([change("c", 0, { nope: "x" })]), 400, "malformed"],
      [
        "a table that is not synced",
        () => push([{ ...change("c", 0), table: "settings" }]),
        400,
        "malformed",
      ],
      [
        "a version that is no HLC",
        () => push([{ ...change("c", 0), version: "yesterday" }]),
        400,
        "malformed",
      ],
      ["a pull of an unknown table", () => pull({ nope: null }), 400, "malformed"],
      ["a pull with a foreign cursor", () => pull({ tasks: "x" }), 400, "malformed"],
      ["an object without a protocol", () => post(app, "/push", {}), 400, "malformed"],
      ["an array for the request", () => post(app, "/push", [1, 2]), 400, "malformed"],
      [
        "too many changes",
        () => push(Array.from({ length: 11 }, (_, i) => change(`many${i}`, 0))),
        413,
        "too_large",
      ],
      [
        "a body over the limit (no Content-Length: counted while read)",
        () => push([change("c", 0, { title: "x".repeat(100_000) })]),
        413,
        "too_large",
      ],
      [
        "no JSON media type",
        () => post(app, "/push", "{}", { "content-type": "text/plain" }),
        415,
        "unsupported_media_type",
      ],
      [
        // Bytes, not a string: a string body would get a text/plain type on its own.
        "no media type at all",
        () => post(app, "/push", utf8.encode("{}"), {}),
        415,
        "unsupported_media_type",
      ],
    ];
    for (const [name, request, status, code] of cases) {
      assertError(await request(), status, code, name);
    }

    const typed = await push([change("c", 0, { title: 42 })]);
    const issues = (typed.json.error as { issues: { path: string }[] }).issues;
    assert.ok(
      issues.some((issue) => issue.path === "changes.0.data.title"),
      JSON.stringify(issues),
    );
    const undecodable = (await post(app, "/push", notUtf8)).json.error as { message: string };
    assert.match(undecodable.message, /UTF-8/, "refused for its encoding, not as JSON");

    const pulled = await database.pull({ tasks: null }, 100);
    assert.deepEqual(pulled.tasks!.rows.map((r) => [r.id, r.data.title]), [["a", "kept"]]);
  } finally {
    await database.close();
  }
});

test("app.request: an unknown route is a JSON 404", async () => {
  const { app, database } = await openEndpoint();
  try {
    for (const [method, path] of [["GET", "/nope"], ["POST", "/nope"], ["GET", "/push"]]) {
      const response = await app.request(path!, { method });
      assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
      assertError({ status: response.status, json: await response.json() }, 404, "not_found");
    }
  } finally {
    await database.close();
  }
});

test("app.request: authorize returning null is a 401, for push and pull alike", async () => {
  const { app, database, now } = await openEndpoint(() => null);
  const { push, change, pull } = requests(app, now);
  try {
    assertError(await push([change("a", 0)]), 401, "unauthorized");
    assertError(await pull({ tasks: null }), 401, "unauthorized");
    // Credentials are judged first: not even the media type or the body is looked at.
    assertError(await post(app, "/push", "{not json", {}), 401, "unauthorized");
    assert.equal((await app.request("/health")).status, 200, "health needs no credentials");
    assert.deepEqual((await database.pull({ tasks: null }, 10)).tasks!.rows, []);
  } finally {
    await database.close();
  }
});

test("app.request: authorize throwing an HTTPException keeps its 401 or 403", async () => {
  for (const [status, code] of [[401, "unauthorized"], [403, "forbidden"]] as const) {
    const { app, database, now } = await openEndpoint(() => {
      throw new HTTPException(status, { message: "No entry" });
    });
    const { push } = requests(app, now);
    try {
      assertError(await push([]), status, code);
    } finally {
      await database.close();
    }
  }
});

test("a direct push with a non-boolean deleted or non-object data rejects that change alone", async () => {
  const { database, now } = await openEndpoint();
  const version = formatHlc({ ms: now(), counter: 0, nodeId: "x" });
  const good = { table: "tasks", id: "ok", version, deleted: false, data: { title: "t" } };
  try {
    const results = await database.push([
      { ...good, id: "d", deleted: "yes" as unknown as boolean },
      { ...good, id: "s", data: "title" as unknown as Record<string, unknown> },
      good,
    ]);
    assert.deepEqual(results.map((r) => [r.id, r.status, r.code]), [
      ["d", "rejected", "invalid_change"],
      ["s", "rejected", "invalid_change"],
      ["ok", "applied", undefined],
    ]);
  } finally {
    await database.close();
  }
});

test("app.request: 413 from a Content-Length over the limit, and from a body without one", async () => {
  const { app, database, now } = await openEndpoint();
  const { change } = requests(app, now);
  try {
    // A well-formed small push whose Content-Length announces too much: the
    // header alone decides, before the body is read.
    const small = JSON.stringify({
      protocol: PROTOCOL_VERSION,
      nodeId: "x",
      schema: schema.hash,
      changes: [change("a", 0)],
    });
    const announced = await post(app, "/push", small, {
      "content-type": "application/json",
      "content-length": String(MAX_BODY_BYTES + 1),
    });
    assertError(announced, 413, "too_large");

    // A stream that never ends and declares no length: refused once the
    // limit is read, not after the (endless) body.
    const chunk = new Uint8Array(16 * 1024).fill(0x20);
    const endless = new ReadableStream<Uint8Array>({
      pull: (controller) => controller.enqueue(chunk),
    });
    const response = await app.request("/push", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: endless,
      duplex: "half", // Node's fetch wants it for a stream body
    } as RequestInit);
    assertError({ status: response.status, json: await response.json() }, 413, "too_large");
    assert.deepEqual((await database.pull({ tasks: null }, 10)).tasks!.rows, []);
  } finally {
    await database.close();
  }
});
