// A schema mismatch explains itself: the description of a schema holds
// exactly what its hash is made of, two descriptions compare in words, the
// endpoint answers GET /schema, and a client refused with 409
// schema_mismatch says which tables and columns differ and how to fix it.
// Real servers on 127.0.0.1, real libSQL, real HTTP.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { SyncError } from "../src/errors.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";
import {
  blob,
  boolean,
  type ColumnKind,
  defineSchema,
  integer,
  json,
  type LwwMode,
  real,
  type Schema,
  table,
  type TableDef,
  text,
} from "../src/schema.ts";
import {
  compareSchemas,
  describeSchema,
  type SchemaDifference,
  type SchemaResponse,
} from "../src/schema_description.ts";
import type { SyncStatus } from "../src/sync_manager.ts";
import { schema as example } from "../examples/schema.ts";
import { schema as fixture } from "./fixtures.ts";
import { bearer, openClient, startServer } from "./sync_helpers.ts";

// ---------------------------------------------------------------- the description and the hash

interface ColumnSpec {
  name: string;
  kind: ColumnKind;
  notNull: boolean;
  fallback?: { value: unknown };
}
interface IndexSpec {
  columns: string[];
  name?: string;
  unique: boolean;
}
interface TableSpec {
  name: string;
  synced: boolean;
  lww: LwwMode;
  scope?: string;
  columns: ColumnSpec[];
  indexes: IndexSpec[];
}

const KINDS: readonly ColumnKind[] = ["text", "integer", "real", "blob", "boolean", "json"];
const DEFAULTS: readonly unknown[] = [
  null,
  0,
  1,
  -0,
  "",
  "0",
  true,
  false,
  new Uint8Array([1]),
  new Uint8Array([1, 2]),
  { a: 1 },
  { b: 1, a: 1 },
];

const columnArb: fc.Arbitrary<ColumnSpec> = fc.record({
  name: fc.constantFrom("x", "y", "z"),
  kind: fc.constantFrom(...KINDS),
  notNull: fc.boolean(),
  fallback: fc.option(fc.constantFrom(...DEFAULTS).map((value) => ({ value })), {
    nil: undefined,
  }),
}, { requiredKeys: ["name", "kind", "notNull"] });

const tableArb: fc.Arbitrary<TableSpec> = fc.record({
  name: fc.constantFrom("a", "b", "constructor"),
  synced: fc.boolean(),
  lww: fc.constantFrom<LwwMode>("row", "column"),
  scope: fc.option(fc.constantFrom("x", "y"), { nil: undefined }),
  columns: fc.uniqueArray(columnArb, { minLength: 1, maxLength: 3, selector: (c) => c.name }),
  indexes: fc.array(
    fc.record({
      columns: fc.uniqueArray(fc.constantFrom("x", "y", "system_version"), {
        minLength: 1,
        maxLength: 2,
      }),
      name: fc.option(fc.constantFrom("i1", "i2"), { nil: undefined }),
      unique: fc.boolean(),
    }, { requiredKeys: ["columns", "unique"] }),
    { maxLength: 2 },
  ),
}, { requiredKeys: ["name", "synced", "lww", "columns", "indexes"] });

const schemaArb = fc.uniqueArray(tableArb, { minLength: 1, maxLength: 3, selector: (t) => t.name });

/** One small change to a schema; some of them change nothing. */
type Mutation = (tables: TableSpec[], n: number) => void;
const MUTATIONS: readonly Mutation[] = [
  (ts, n) => void (pick(ts, n).synced = !pick(ts, n).synced),
  (ts, n) => void (pick(ts, n).lww = n % 2 === 0 ? "row" : "column"),
  (ts, n) => void (pick(ts, n).scope = n % 3 === 0 ? undefined : n % 3 === 1 ? "x" : "y"),
  (ts, n) => void (pick(pick(ts, n).columns, n).kind = KINDS[n % KINDS.length]!),
  (ts, n) => void (pick(pick(ts, n).columns, n).notNull = n % 2 === 0),
  (ts, n) => {
    const column = pick(pick(ts, n).columns, n);
    if (n % 4 === 0) delete column.fallback;
    else column.fallback = { value: DEFAULTS[n % DEFAULTS.length] };
  },
  (ts, n) => void pick(ts, n).columns.push({ name: "w", kind: "text", notNull: false }),
  (ts, n) => void (pick(ts, n).columns.length > 1 && pick(ts, n).columns.pop()),
  (ts, n) => void (pick(pick(ts, n).columns, n).name = "X"),
  (ts, n) => void pick(ts, n).indexes.push({ columns: ["x"], unique: false }),
  (ts, n) => void pick(ts, n).indexes.reverse(),
  (ts, n) => void pick(ts, n).indexes.pop(),
  (ts, n) => {
    const index = pick(ts, n).indexes[0];
    if (index !== undefined) index.name = n % 2 === 0 ? undefined : "i3";
  },
  (ts, n) => void ts.push({ ...structuredClone(pick(ts, n)), name: "c" }),
  (ts, n) => void (ts.length > 1 && ts.splice(n % ts.length, 1)),
];

function pick<T>(list: T[], n: number): T {
  return list[n % list.length]!;
}

const COLUMN_OF: Record<ColumnKind, () => ReturnType<typeof text>> = {
  text: () => text(),
  integer: () => integer() as never,
  real: () => real() as never,
  blob: () => blob() as never,
  boolean: () => boolean() as never,
  json: () => json() as never,
};

/** The schema of a spec, or undefined where `table`/`defineSchema` refuse it. */
function build(specs: readonly TableSpec[]): Schema | undefined {
  try {
    const tables: Record<string, TableDef> = {};
    for (const spec of specs) {
      const columns: Record<string, ReturnType<typeof text>> = {};
      for (const c of spec.columns) {
        let column = COLUMN_OF[c.kind]();
        if (c.notNull) column = column.notNull() as never;
        if (c.fallback !== undefined) column = column.default(c.fallback.value as never) as never;
        columns[c.name] = column;
      }
      tables[spec.name] = table(columns, {
        withSystemColumns: spec.synced,
        ...(spec.synced ? { lww: spec.lww, scope: spec.scope } : {}),
        indexes: spec.indexes,
      } as never);
    }
    const names = new Set(
      Object.entries(tables).flatMap(([name, t]) =>
        t.indexes.map((i) => i.name ?? `${name}_${i.columns.join("_")}_idx`)
      ),
    );
    const count = Object.entries(tables).reduce((n, [, t]) => n + t.indexes.length, 0);
    // Index names are unique in a database: a schema reusing one is not one to compare.
    if (names.size !== count) return undefined;
    return defineSchema(tables);
  } catch (error) {
    if (error instanceof TypeError) return undefined;
    throw error;
  }
}

test("two schemas' descriptions compare equal exactly when their hashes are equal, also after a JSON round trip", () => {
  fc.assert(
    fc.property(
      schemaArb,
      fc.array(fc.tuple(fc.nat(MUTATIONS.length - 1), fc.nat(1_000)), { maxLength: 2 }),
      (specs, mutations) => {
        const changed = structuredClone(specs);
        for (const [which, n] of mutations) MUTATIONS[which]!(changed, n);
        const a = build(specs);
        const b = build(changed);
        fc.pre(a !== undefined && b !== undefined);
        const all = { localTables: true };
        const ours = describeSchema(a!, all);
        const theirs = JSON.parse(JSON.stringify(describeSchema(b!, all)));
        const differences = compareSchemas(ours, theirs);
        assert.equal(
          differences.length === 0,
          a!.migrationHash === b!.migrationHash,
          JSON.stringify({ specs, changed, differences }),
        );
        // The wire hash counts the synced tables only, as the default description does.
        const synced = compareSchemas(describeSchema(a!), describeSchema(b!));
        assert.equal(synced.length === 0, a!.hash === b!.hash, JSON.stringify({ specs, changed }));
        assert.deepEqual(differences, compareSchemas(ours, describeSchema(b!, all)));
        for (const difference of differences) {
          assert.ok(difference.message.startsWith(`table ${difference.table}: `));
        }
      },
    ),
    { seed: 20_260_501, numRuns: 2_000 },
  );
});

test("describeSchema describes the synced tables only, unless asked for the local-only ones", () => {
  assert.deepEqual(describeSchema(example).map((t) => t.name), ["notes", "tasks"]);
  assert.deepEqual(describeSchema(example, { localTables: true }).map((t) => [t.name, t.synced]), [
    ["notes", true],
    ["preferences", false],
    ["tasks", true],
  ]);
  const tasks = describeSchema(example).find((t) => t.name === "tasks");
  assert.deepEqual(tasks, {
    name: "tasks",
    synced: true,
    lww: "row",
    scope: null,
    columns: [
      { name: "done", kind: "integer", notNull: true, primaryKey: false, default: 0 },
      { name: "notes", kind: "text", notNull: false, primaryKey: false },
      { name: "title", kind: "text", notNull: true, primaryKey: false },
    ],
    indexes: [{ name: "tasks_done_idx", columns: ["done"], unique: false }],
  });
});

test("compareSchemas says what differs, table by table, in words", () => {
  const client = defineSchema({
    tasks: table({ title: text().notNull(), done: integer().notNull().default(0) }, {
      withSystemColumns: true,
      indexes: [{ columns: ["done"] }],
    }),
    notes: table({ body: text() }, { withSystemColumns: true, lww: "column" }),
    files: table({ name: text() }, { withSystemColumns: true }),
    todos: table({ owner: text(), title: text() }, { withSystemColumns: true, scope: "owner" }),
  });
  const server = defineSchema({
    tasks: table({ title: text(), done: text().notNull().default("no") }, {
      withSystemColumns: true,
      indexes: [{ columns: ["done", "title"], name: "tasks_done_idx" }],
    }),
    notes: table({ body: text(), color: text() }, { withSystemColumns: true }),
    todos: table({ owner: text(), title: text() }, { withSystemColumns: true }),
    tags: table({ label: text().notNull() }, { withSystemColumns: true }),
  });
  const messages = compareSchemas(describeSchema(client), describeSchema(server)).map((d) =>
    d.message
  );
  assert.deepEqual(messages, [
    "table files: only on the client",
    "table notes: merges per column on the client, per row on the server",
    "table notes: the server has column color (text), the client does not",
    "table tags: only on the server",
    "table tasks: column done is integer on the client, text on the server",
    'table tasks: column done defaults to 0 on the client, defaults to "no" on the server',
    "table tasks: column title is notNull on the client, nullable on the server",
    "table tasks: index tasks_done_idx is on (done) on the client, on (done, title) on the server",
    "table todos: scoped by owner on the client, not scoped on the server",
  ]);
  const color = compareSchemas(describeSchema(client), describeSchema(server)).find((d) =>
    d.column === "color"
  );
  assert.deepEqual(color?.table, "notes");
  assert.deepEqual(compareSchemas(describeSchema(client), describeSchema(client)), []);
});

// ---------------------------------------------------------------- over HTTP

/** The example schema, but notes have no color and files are the client's own idea. */
const drifted = defineSchema({
  tasks: table({
    title: text().notNull(),
    done: text().notNull().default("0"),
    notes: text(),
  }, { withSystemColumns: true, lww: "row", indexes: [{ columns: ["done"] }] }),
  notes: table({
    body: text().notNull().default(""),
    pinned: boolean().notNull().default(false),
  }, { withSystemColumns: true, lww: "column" }),
  files: table({ name: text().notNull() }, { withSystemColumns: true }),
  preferences: table({ key: text().primaryKey(), value: json() }),
});

test("GET /schema answers the protocol, the hash and the synced tables, behind authorize", async () => {
  const server = await startServer(fixture, { authorize: bearer({ s3cret: "alice" }) });
  try {
    const refused = await fetch(`${server.url}/schema`);
    assert.equal(refused.status, 401);
    assert.equal((await refused.json()).error.code, "unauthorized");
    const answer = await fetch(`${server.url}/schema?x=%ZZ&__proto__[a]=1`, {
      headers: { authorization: "Bearer s3cret", "content-type": "text/plain" },
    });
    assert.equal(answer.status, 200);
    assert.match(answer.headers.get("content-type") ?? "", /^application\/json/);
    const body = await answer.json() as SchemaResponse;
    assert.deepEqual(body, {
      protocol: PROTOCOL_VERSION,
      schema: fixture.hash,
      tables: JSON.parse(JSON.stringify(describeSchema(fixture))),
    });
    // The local-only table is the client's own business.
    assert.deepEqual(body.tables.map((t) => t.name), ["files", "notes", "tasks"]);
    const posted = await fetch(`${server.url}/schema`, { method: "POST" });
    assert.equal(posted.status, 404);
    assert.equal((await posted.json()).error.code, "not_found");
  } finally {
    await server.close();
  }
});

test("a client of another schema is told which tables and columns differ and how to fix it; the manager reports it on every attempt", async () => {
  const server = await startServer(example);
  const asked: string[] = [];
  const client = await openClient(drifted, server, {
    http: {
      fetch: (input, init) => {
        asked.push(`${init?.method ?? "GET"} ${new URL(String(input)).pathname}`);
        return fetch(input, init);
      },
    },
    manager: { retryDelay: 10, maxRetryDelay: 20 },
  });
  const errors: unknown[] = [];
  client.manager.addEventListener("error", (event) => errors.push(event.detail));
  try {
    await client.db.insert("tasks", { title: "Buy milk" });
    const error = await client.manager.syncNow().then(
      () => assert.fail("the sync should fail"),
      (error: unknown) => error,
    );
    assert.ok(error instanceof SyncError);
    assert.equal(error.code, "schema_mismatch");
    for (
      const line of [
        "table files: only on the client",
        "table notes: the server has column color (text), the client does not",
        "table tasks: column done is text on the client, integer on the server",
        "--schema",
        "update the client",
      ]
    ) assert.ok(error.message.includes(line), `${line} in:\n${error.message}`);
    const differences = error.details.differences as SchemaDifference[];
    assert.deepEqual(differences.map((d) => [d.table, d.column ?? null]), [
      ["files", null],
      ["notes", "color"],
      ["tasks", "done"],
      ["tasks", "done"],
    ]);
    assert.equal(error.details.status, 409);
    assert.equal((error.details.server as SchemaResponse).schema, example.hash);
    assert.ok(error.cause instanceof SyncError, "the server's own refusal is the cause");
    // One GET /schema for the one refusal: the push was refused, nothing was pulled.
    assert.deepEqual(asked, ["POST /push", "GET /schema"]);
    const status: SyncStatus = client.manager.status;
    assert.equal(status.state, "error");
    assert.equal(status.lastError, error);
    assert.equal(status.pending, 1);
    assert.deepEqual(errors, [error]);

    // In the background it is retried, and reported each time: never silently.
    client.manager.start();
    const deadline = Date.now() + 10_000;
    while (errors.length < 3 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(errors.length >= 3, `error events: ${errors.length}`);
    assert.ok(errors.every((e) => e instanceof SyncError && e.code === "schema_mismatch"));
  } finally {
    await client.manager.stop();
    await client.db.close();
    await server.close();
  }
});

test("a mismatch met during a deploy is reported, not offline, and syncs once the server runs the client's schema", async () => {
  const before = await startServer(drifted);
  const after = await startServer(example);
  let phase: "down" | "old" | "new" = "down";
  // One address for the client; behind it, no server, then the old one, then the new one.
  const client = await openClient(example, { url: "http://deploy.invalid" }, {
    http: {
      fetch: (input, init) =>
        phase === "down" ? Promise.reject(new TypeError("connection refused")) : fetch(
          String(input).replace("http://deploy.invalid", (phase === "old" ? before : after).url),
          init,
        ),
    },
    manager: { retryDelay: 10, maxRetryDelay: 20 },
  });
  const errors: unknown[] = [];
  const states: string[] = [];
  client.manager.addEventListener("error", (event) => errors.push(event.detail));
  client.manager.addEventListener("status", (event) => states.push(event.detail.state));
  const until = async (done: () => boolean, what: string) => {
    const deadline = Date.now() + 10_000;
    while (!done()) {
      if (Date.now() > deadline) assert.fail(`no ${what} within 10 s`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  try {
    const task = await client.db.insert("tasks", { title: "Ship it" });
    client.manager.start();
    // Offline is a state, not an error to report.
    await until(() => states.includes("offline"), "offline state");
    assert.equal(errors.length, 0, "no error event while offline");
    phase = "old";
    await until(() => errors.length > 0, "error event");
    const first = errors[0] as SyncError;
    assert.equal(first.code, "schema_mismatch");
    assert.match(first.message, /table notes: the client has column color \(text\), the server/);
    assert.equal(client.manager.status.state, "error");
    const synced = new Promise<void>((resolve) =>
      client.manager.addEventListener("synced", () => resolve(), { once: true })
    );
    phase = "new";
    await synced;
    const page = await after.database.pull({ tasks: null }, 10);
    assert.deepEqual(page.tasks!.rows.map((row) => row.id), [task.system_id]);
    assert.equal(client.manager.status.state, "idle");
    assert.equal(client.manager.status.lastError, undefined);
  } finally {
    await client.manager.stop();
    await client.db.close();
    await before.close();
    await after.close();
  }
});

test("when GET /schema cannot be read, the mismatch is still reported as the server said it, within the timeout", async () => {
  const server = await startServer(example);
  const attempts: Record<string, (input: string, init?: RequestInit) => Promise<Response>> = {
    // The network fails for GET /schema alone.
    unreachable: () => Promise.reject(new TypeError("network is down")),
    // GET /schema never answers: the transport's timeout ends it.
    hanging: (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal!.reason));
      }),
    // An older server, without the route.
    older: (input, init) => fetch(String(input).replace("/schema", "/nowhere"), init),
    // An answer that is not a description.
    malformed: (input, init) => fetch(String(input).replace("/schema", "/health"), init),
  };
  try {
    for (const [name, schemaFetch] of Object.entries(attempts)) {
      const client = await openClient(drifted, server, {
        http: {
          timeout: 500,
          fetch: (input, init) =>
            String(input).endsWith("/schema")
              ? schemaFetch(String(input), init)
              : fetch(input, init),
        },
      });
      try {
        await client.db.insert("files", { name: "a" });
        const started = Date.now();
        const error = await client.manager.syncNow().then(() => undefined, (e: unknown) => e);
        assert.ok(Date.now() - started < 5_000, `${name}: bounded`);
        assert.ok(error instanceof SyncError, name);
        assert.equal(error.code, "schema_mismatch", name);
        assert.match(error.message, /answered 409: schema_mismatch: Schema/, name);
        assert.match(error.message, /could not be read/, name);
        assert.match(error.message, /--schema/, name);
        assert.equal(error.details.status, 409, name);
        assert.equal(typeof error.details.schemaUnavailable, "string", name);
      } finally {
        await client.db.close();
      }
    }
  } finally {
    await server.close();
  }
});

test("a client with local-only tables of its own syncs with a server that declares other ones", async () => {
  const server = await startServer(example);
  // The example schema's local-only `preferences` is left out, and `drafts` added.
  const { preferences: _, ...synced } = example.tables;
  const mine = defineSchema({ ...synced, drafts: table({ body: text() }) });
  assert.equal(mine.hash, example.hash, "the wire hash counts the synced tables only");
  assert.notEqual(mine.migrationHash, example.migrationHash);
  const client = await openClient(mine, server);
  try {
    await client.db.insert("tasks", { title: "mine" });
    await client.db.insert("drafts", { body: "never sent" });
    await client.manager.syncNow();
    assert.equal(await client.db.countDirtyRows(), 0);
  } finally {
    await client.db.close();
    await server.close();
  }
});
