/**
 * Convergence under faults: a model-based harness for sync end to end.
 *
 * A schedule is a list of steps run against one sync server (`startServer` on
 * a `file:` libSQL database, `bearer` tokens, two clients per principal) and
 * 3–5 client replicas (each on its own `file:` database, with a
 * `ServerSyncManager` over the real `createHttpSync` transport, pages of one
 * row and batches of two changes). Every schedule starts from a prelude: one
 * row per table (one `todos` row per principal) that every client has pulled.
 * Steps write to every table of `syncSchema` (inserts with shared ids that
 * collide across clients and fresh ones, updates — of a row the replica holds,
 * or of a shared id — including `{}` and patches of only `undefined`, deletes;
 * blobs, JSON with awkward reals and 2^53 - 1, unicode text), sync a client
 * (`syncNow()`; no background timers), write while the client's own push or
 * pull is on the wire and call `syncNow()` again, and inject faults: a
 * request lost before it is sent, a response lost after the server applied
 * it, a request sent twice, a request held back and released after a later
 * one, the server restarted from its file, a client closed while a sync runs
 * and reopened, client wall clocks skewed or stepping back (inside
 * `maxDrift`), a client file restored from an older copy, and a client
 * writing a `todos` row in another principal's scope.
 *
 * After the schedule the faults stop and every client syncs until a full round
 * changes nothing. Then it checks, reading raw SQL (the server through a
 * separate `@libsql/client` on its file):
 *
 * - `converged`: every replica equals the server, table for table and column
 *   for column, system columns included (`todos`: the principal's rows, plus
 *   the rows the server refused);
 * - `oracle`: the server equals a last-write-wins oracle of every write the
 *   schedule made (the greatest version wins the row, or each column of a
 *   `lww: "column"` table, and `system_version` is the greatest column
 *   version); a write lost in a file restore before it reached the server is
 *   not in it;
 * - `outbox`: every outbox is empty and every manager idle with nothing pending;
 * - `rejected`: `_sync_rejected` holds exactly the scope violations the
 *   schedule made, with code `forbidden`, and the replica keeps those rows;
 * - `quiesce`: with the faults off, syncs succeed and settle within a few rounds;
 * - `sync_now`: a `syncNow()` that resolves has sent every change that waited
 *   in the outbox when it was called;
 * - `hlc`: a replica's versions only grow (a restore aside), and no version is
 *   issued twice for different writes of a row.
 *
 * {@linkcode checkConvergence} runs schedules from fast-check and shrinks a
 * failure to a small schedule; {@linkcode runSchedule} runs one (replay). The
 * CI test is `tests/convergence_faults.test.ts`; run longer with
 * `node --import tsx scripts/soak.ts --minutes 10` (also `--runtime deno|bun`),
 * or `FUZZ_RUNS=200 FUZZ_STEPS=60 FUZZ_SEED=…` on the test;
 * `FUZZ_SCHEDULE='<json>'` replays one printed schedule.
 *
 * Steps run one after another, and after each one the harness waits until
 * every sync has finished or waits on a held request; only held requests,
 * `duringSync` (which gates the request it writes under) and `sync` steps with
 * `wait: false` let a sync overlap later steps. So most of a schedule replays
 * the same way, and every check holds for any interleaving.
 *
 * @module
 */

import fc from "fast-check";
import { copyFileSync, existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { type Database, openDatabase } from "../src/database.ts";
import { createHttpSync } from "../src/http_sync.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import type { ColumnKind } from "../src/schema.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import { describeTables } from "../src/table_info.ts";
import { syncSchema } from "./fixtures.ts";
import { tempDir } from "./helpers.ts";
import { bearer, startServer, type TestServer } from "./sync_helpers.ts";

type Tables = typeof syncSchema.tables;
type Db = Database<Tables>;

/** The synced tables of `syncSchema`. */
export type TableName = "tasks" | "notes" | "files" | "todos";
const TABLES: readonly TableName[] = ["tasks", "notes", "files", "todos"];
const INFOS = describeTables(syncSchema.tables);
const COLUMN_TABLES: ReadonlySet<TableName> = new Set(["notes"]);

// ---------------------------------------------------------------------------
// Schedules: plain JSON, so a printed one can be replayed.

/**
 * Which row an update or delete addresses: the `row`-th live row the replica
 * holds over all synced tables (its own or pulled), a shared id of a table
 * (which the replica may not hold), or the `forged`-th row it wrote into
 * another principal's scope.
 */
export type Target =
  | { readonly row: number }
  | { readonly table: TableName; readonly shared: number }
  | { readonly forged: number };

/**
 * A patch for whichever table the target row is in: the positions of the
 * updatable columns it sets and of those it gives as `undefined` (JSON cannot
 * hold `undefined`), and a value of each kind for them.
 */
export interface Patch {
  /** Positions of the columns set (modulo the table's updatable columns). */
  readonly set: readonly number[];
  /** Positions of the columns given as `undefined`; they win over `set`. */
  readonly unset: readonly number[];
  /** For a notNull text column. */
  readonly text: string;
  /** For a nullable text column. */
  readonly nullableText: string | null;
  /** For an integer column. */
  readonly integer: number;
  /** For a boolean column. */
  readonly boolean: boolean;
  /** For a blob column. */
  readonly blob: { readonly bytes: readonly number[] } | null;
  /** For a json column. */
  readonly json: Readonly<Record<string, unknown>> | null;
}

/** A fault armed for the next `count` requests of a client (the step then syncs it). */
export type FaultKind = "lose_request" | "lose_response" | "duplicate" | "hold";

/** One step of a schedule. Client numbers are taken modulo the number of clients. */
export type Step =
  | {
    readonly t: "insert";
    readonly c: number;
    readonly table: TableName;
    readonly id: "new" | { readonly shared: number };
    readonly values: Readonly<Record<string, unknown>>;
  }
  | { readonly t: "update"; readonly c: number; readonly target: Target; readonly patch: Patch }
  | { readonly t: "delete"; readonly c: number; readonly target: Target }
  | { readonly t: "forge"; readonly c: number; readonly victim: number; readonly title: string }
  | { readonly t: "sync"; readonly c: number; readonly wait: boolean }
  | {
    readonly t: "fault";
    readonly c: number;
    readonly fault: FaultKind;
    readonly on: "push" | "pull" | "any";
    readonly count: number;
  }
  | { readonly t: "faultsOff" }
  | { readonly t: "release"; readonly order: "oldest" | "newest" }
  | { readonly t: "restartServer" }
  | { readonly t: "restartClient"; readonly c: number; readonly during: "push" | "pull" | "idle" }
  | { readonly t: "skew"; readonly c: number; readonly offset: number }
  /** The wall clock steps back by `ms`; with `restart`, the client is then closed and reopened. */
  | { readonly t: "stepBack"; readonly c: number; readonly ms: number; readonly restart: boolean }
  /**
   * While the client's own push or pull is on the wire, `write` (an insert,
   * update or delete, run on the same client) and a second `syncNow()`.
   */
  | {
    readonly t: "duringSync";
    readonly c: number;
    readonly during: "push" | "pull";
    readonly write: Step;
  }
  | { readonly t: "advance"; readonly ms: number }
  | { readonly t: "snapshot"; readonly c: number }
  | { readonly t: "restore"; readonly c: number };

/** A schedule: how many clients, and the steps. Blobs are written `{ bytes: [...] }`. */
export interface Schedule {
  readonly clients: number;
  readonly steps: readonly Step[];
}

const texts: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "",
      "a",
      "naïve café",
      "日本語テキスト",
      "🙂👍🏽🇫🇷",
      "e\u0301",
      "\u{10FFFF}",
      "tab\tnew\nline",
      `quote ' " \\`,
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 6 }) },
);
const integers = fc.oneof(
  fc.constantFrom(0, 1, -1, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 31),
  fc.integer(),
);
const reals = fc.oneof(
  fc.constantFrom(
    0.30000000000000004,
    0.1,
    1e-7,
    1e21,
    5e-324,
    1.7976931348623157e308,
    2 ** 53 - 1,
    -(2 ** 53 - 1),
    -2.5,
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const jsonKeys = fc.constantFrom("a", "b", "ключ", "😀", "k y", "");
const jsonLeaves = fc.oneof(reals, integers, texts, fc.boolean(), fc.constant(null));
const jsonValues = fc.dictionary(
  jsonKeys,
  fc.oneof(
    jsonLeaves,
    fc.array(jsonLeaves, { maxLength: 3 }),
    fc.dictionary(jsonKeys, jsonLeaves, { maxKeys: 2 }),
  ),
  { maxKeys: 3 },
);
const blobs = fc.uint8Array({ maxLength: 6 }).map((bytes) => ({ bytes: [...bytes] }));

const COLUMN_VALUES: Record<TableName, Record<string, fc.Arbitrary<unknown>>> = {
  tasks: { title: texts, done: integers, notes: fc.option(texts, { nil: null }) },
  notes: { body: texts, pinned: fc.boolean(), color: fc.option(texts, { nil: null }) },
  files: {
    name: texts,
    bytes: fc.option(blobs, { nil: null }),
    meta: fc.option(jsonValues, { nil: null }),
  },
  // `owner` is the client's principal, set when the step runs; patches never move a row.
  todos: { title: texts },
};
const REQUIRED: Record<TableName, string[]> = {
  tasks: ["title"],
  notes: [],
  files: ["name"],
  todos: ["title"],
};

const clientArb = fc.nat(4);

function insertArb(table: TableName): fc.Arbitrary<Step> {
  return fc.record({
    t: fc.constant("insert" as const),
    c: clientArb,
    table: fc.constant(table),
    id: fc.oneof(fc.constant("new" as const), fc.record({ shared: fc.nat(1) })),
    values: fc.record(COLUMN_VALUES[table], {
      requiredKeys: REQUIRED[table] as never[],
    }) as fc.Arbitrary<
      Record<string, unknown>
    >,
  });
}

/** The columns an update may set, per table (a `todos` row never moves to another scope). */
const UPDATABLE: Record<TableName, readonly string[]> = {
  tasks: ["title", "done", "notes"],
  notes: ["body", "pinned", "color"],
  files: ["name", "bytes", "meta"],
  todos: ["title"],
};

const targetArb: fc.Arbitrary<Target> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ row: fc.nat(9) }) },
  {
    weight: 1,
    arbitrary: fc.record({ table: fc.constantFrom(...TABLES), shared: fc.nat(1) }),
  },
  { weight: 1, arbitrary: fc.record({ forged: fc.nat(3) }) },
);

const patchArb: fc.Arbitrary<Patch> = fc.record({
  set: fc.oneof(
    { weight: 5, arbitrary: fc.uniqueArray(fc.nat(2), { minLength: 1, maxLength: 3 }) },
    { weight: 1, arbitrary: fc.constant([]) }, // `{}`
  ),
  unset: fc.oneof(
    { weight: 4, arbitrary: fc.constant([]) },
    { weight: 1, arbitrary: fc.uniqueArray(fc.nat(2), { minLength: 1, maxLength: 3 }) },
  ),
  text: texts,
  nullableText: fc.option(texts, { nil: null }),
  integer: integers,
  boolean: fc.boolean(),
  blob: fc.option(blobs, { nil: null }),
  json: fc.option(jsonValues, { nil: null }),
});

function stepArb(): fc.Arbitrary<Step> {
  const perTable = (make: (table: TableName) => fc.Arbitrary<Step>) =>
    fc.oneof(...TABLES.map(make));
  const of = <S extends Step>(arb: fc.Arbitrary<S>, weight: number) => ({
    weight,
    arbitrary: arb as fc.Arbitrary<Step>,
  });
  const writes = {
    insert: perTable(insertArb),
    update: fc.record({
      t: fc.constant("update" as const),
      c: clientArb,
      target: targetArb,
      patch: patchArb,
    }) as fc.Arbitrary<Step>,
    delete: fc.record({
      t: fc.constant("delete" as const),
      c: clientArb,
      target: targetArb,
    }) as fc.Arbitrary<Step>,
  };
  return fc.oneof(
    of(writes.insert, 6),
    of(writes.update, 7),
    of(writes.delete, 2),
    of(
      fc.record({
        t: fc.constant("forge" as const),
        c: clientArb,
        victim: fc.nat(3),
        title: texts,
      }),
      1,
    ),
    of(
      fc.record({
        t: fc.constant("sync" as const),
        c: clientArb,
        wait: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, {
          weight: 1,
          arbitrary: fc.constant(false),
        }),
      }),
      10,
    ),
    of(
      fc.record({
        t: fc.constant("fault" as const),
        c: clientArb,
        fault: fc.constantFrom<FaultKind>("lose_request", "lose_response", "duplicate", "hold"),
        on: fc.constantFrom("push" as const, "pull" as const, "any" as const),
        count: fc.integer({ min: 1, max: 2 }),
      }),
      4,
    ),
    of(fc.constant({ t: "faultsOff" as const }), 1),
    of(
      fc.record({
        t: fc.constant("release" as const),
        order: fc.constantFrom("oldest" as const, "newest" as const),
      }),
      1,
    ),
    of(fc.constant({ t: "restartServer" as const }), 1),
    of(
      fc.record({
        t: fc.constant("restartClient" as const),
        c: clientArb,
        during: fc.constantFrom("push" as const, "pull" as const, "idle" as const),
      }),
      1,
    ),
    of(
      fc.record({
        t: fc.constant("skew" as const),
        c: clientArb,
        offset: fc.integer({ min: -20_000, max: 20_000 }),
      }),
      2,
    ),
    of(
      fc.record({
        t: fc.constant("stepBack" as const),
        c: clientArb,
        ms: fc.integer({ min: 1, max: 15_000 }),
        restart: fc.boolean(),
      }),
      2,
    ),
    of(
      fc.record({ t: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 5_000 }) }),
      1,
    ),
    of(
      fc.record({
        t: fc.constant("duringSync" as const),
        c: clientArb,
        during: fc.constantFrom("push" as const, "pull" as const),
        write: fc.oneof(writes.insert, writes.update, writes.delete),
      }),
      3,
    ),
    of(fc.record({ t: fc.constant("snapshot" as const), c: clientArb }), 2),
    of(fc.record({ t: fc.constant("restore" as const), c: clientArb }), 2),
  );
}

/** Options of {@linkcode scheduleArbitrary}. */
export interface ScheduleShape {
  /** Fewest steps (default 10). */
  readonly minSteps?: number;
  /** Most steps (default 30). */
  readonly maxSteps?: number;
}

/** Schedules of 3–5 clients and `minSteps`–`maxSteps` steps. */
export function scheduleArbitrary(shape: ScheduleShape = {}): fc.Arbitrary<Schedule> {
  return fc.record({
    clients: fc.integer({ min: 3, max: 5 }),
    steps: fc.array(stepArb(), {
      minLength: shape.minSteps ?? 10,
      maxLength: shape.maxSteps ?? 30,
    }),
  });
}

/** A schedule as text: one step a line, each line JSON. */
export function formatSchedule(schedule: Schedule): string {
  const lines = schedule.steps.map((step, i) =>
    `  ${String(i).padStart(2)} ${JSON.stringify(step)}`
  );
  return `{ "clients": ${schedule.clients}, "steps": [ (${schedule.steps.length})\n${
    lines.join("\n")
  }\n] }\nas JSON: ${JSON.stringify(schedule)}`;
}

// ---------------------------------------------------------------------------
// Values compared as canonical JSON-able primitives, whatever their source.

function hex(bytes: Uint8Array): string {
  let out = "x'";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return `${out}'`;
}

function sortedJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v !== null && typeof v === "object") {
      const entries = Object.entries(v as Record<string, unknown>).sort(([a], [b]) =>
        a < b ? -1 : a > b ? 1 : 0
      );
      return Object.fromEntries(entries.map(([k, x]) => [k, sort(x)]));
    }
    return v;
  };
  return JSON.stringify(sort(value));
}

// A value as the API returns it (decoded), in canonical form.
function canonDecoded(kind: ColumnKind, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (kind) {
    case "blob":
      return hex(value as Uint8Array);
    case "json":
      return `json:${sortedJson(value)}`;
    case "boolean":
      return value === true || value === 1 ? 1 : 0;
    case "integer":
    case "real":
      return Number(value);
    default:
      return value;
  }
}

// A value as SQL stores it (raw), in canonical form. JSON text compares by
// value: two encodings of one JSON value are the same value.
function canonRaw(kind: ColumnKind, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (kind) {
    case "blob":
      if (value instanceof ArrayBuffer) return hex(new Uint8Array(value));
      if (value instanceof Uint8Array) return hex(value);
      return `not a blob: ${typeof value} ${String(value)}`;
    case "json":
      try {
        return `json:${sortedJson(JSON.parse(String(value)))}`;
      } catch {
        return `not JSON: ${String(value)}`;
      }
    case "boolean":
    case "integer":
    case "real":
      return typeof value === "bigint" ? Number(value) : value;
    default:
      return value;
  }
}

/** One stored row, canonical: every column but the server's `system_seq`. */
type Dump = Record<string, unknown>;
type TableDumps = Map<TableName, Map<string, Dump>>;

function dumpRow(table: TableName, raw: Record<string, unknown>): Dump {
  const info = INFOS.get(table)!;
  const dump: Dump = {};
  for (const column of info.columns) dump[column.name] = canonRaw(column.kind, raw[column.name]);
  dump.system_id = raw.system_id;
  dump.system_version = raw.system_version;
  dump.system_created_at = raw.system_created_at;
  dump.is_deleted = typeof raw.is_deleted === "bigint" ? Number(raw.is_deleted) : raw.is_deleted;
  if (info.perColumn) {
    try {
      dump.system_column_versions = sortedJson(JSON.parse(String(raw.system_column_versions)));
    } catch {
      dump.system_column_versions = `not JSON: ${String(raw.system_column_versions)}`;
    }
  }
  return dump;
}

const SELECT_ALL = (table: TableName) => `SELECT * FROM "${table}" ORDER BY system_id`;

async function dumpReplica(db: Db): Promise<TableDumps> {
  const dumps: TableDumps = new Map();
  for (const table of TABLES) {
    const rows = await db.query(SELECT_ALL(table));
    dumps.set(table, new Map(rows.map((row) => [String(row.system_id), dumpRow(table, row)])));
  }
  return dumps;
}

// The server's tables through a client of its own on the file.
async function dumpServerFile(file: string): Promise<TableDumps> {
  const client = createClient({ url: `file:${file}` });
  try {
    const dumps: TableDumps = new Map();
    for (const table of TABLES) {
      const result = await client.execute(SELECT_ALL(table));
      const rows = result.rows.map((row) => {
        const raw: Record<string, unknown> = {};
        result.columns.forEach((name, i) => (raw[name] = row[i]));
        return raw;
      });
      dumps.set(table, new Map(rows.map((raw) => [String(raw.system_id), dumpRow(table, raw)])));
    }
    return dumps;
  } finally {
    client.close();
  }
}

function short(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 90 ? `${text.slice(0, 87)}...` : text;
}

// The columns where two dumps differ, as "column: a vs b".
function rowDiff(a: Dump, b: Dump, left: string, right: string): string {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  return keys
    .filter((key) => JSON.stringify(a[key]) !== JSON.stringify(b[key]))
    .map((key) => `${key}: ${left} ${short(a[key])} vs ${right} ${short(b[key])}`)
    .join("; ");
}

// ---------------------------------------------------------------------------
// The model: every write, what reached the server, and the oracle.

/** A property that failed, with what was seen. */
export interface Violation {
  /** Which property: `converged`, `oracle`, `outbox`, `rejected`, `quiesce`, `sync_now`, `hlc`, `harness`. */
  readonly property: string;
  /** What was seen. */
  readonly message: string;
}

interface Write {
  readonly step: number;
  readonly client: number;
  readonly table: TableName;
  readonly id: string;
  readonly kind: "insert" | "update" | "delete";
  readonly version: string;
  readonly deleted: boolean;
  /** Every declared column after the write, canonical. */
  readonly data: Readonly<Record<string, unknown>>;
  /** The columns this write set (column tables; `is_deleted` included). */
  readonly written: readonly string[];
  /** Made after the client's file was copied, and the copy was later restored. */
  restoredAway: boolean;
}

interface LocalRow {
  readonly version: string;
  readonly deleted: boolean;
  readonly data: Readonly<Record<string, unknown>>;
}

const key = (...parts: string[]) => parts.join("\u0000");

interface ExpectedRow {
  readonly data: Record<string, unknown>;
  readonly version: string;
  readonly deleted: boolean;
  readonly columnVersions: Record<string, string> | undefined;
  readonly createdAt: ReadonlySet<string>;
  readonly why: string;
  /** Every state the server may hold (more than one where writes share a version). */
  readonly alternatives?: readonly ExpectedRow[];
}

class Model {
  readonly writes: Write[] = [];
  readonly #byVersion = new Map<string, Write>();
  readonly #sinceSnapshot = new Map<number, Write[]>();
  /** Per client, the rows it wrote into another principal's scope, as the replica holds them. */
  readonly forged = new Map<number, Map<string, LocalRow>>();
  readonly #forgedAtSnapshot = new Map<number, Map<string, LocalRow>>();
  readonly #lastVersion = new Map<number, string>();

  constructor(readonly violations: Violation[]) {}

  record(write: Write): void {
    const last = this.#lastVersion.get(write.client);
    if (last !== undefined && write.version <= last) {
      this.violations.push({
        property: "hlc",
        message:
          `client ${write.client}: step ${write.step} (${write.kind} ${write.table}/${write.id}) ` +
          `got version ${write.version}, not after ${last} issued before it`,
      });
    }
    this.#lastVersion.set(write.client, write.version);
    const id = key(write.table, write.id, write.version);
    const prior = this.#byVersion.get(id);
    // A restore takes the clock back to the copy's: a version issued after
    // the copy may be issued again (the merge orders the two by value).
    if (
      prior !== undefined && !prior.restoredAway &&
      (sortedJson(prior.data) !== sortedJson(write.data) || prior.deleted !== write.deleted)
    ) {
      this.violations.push({
        property: "hlc",
        message: `version ${write.version} of ${write.table}/${write.id} was issued twice for ` +
          `different writes: step ${prior.step} and step ${write.step}`,
      });
    }
    this.#byVersion.set(id, write);
    this.writes.push(write);
    this.#since(write.client).push(write);
  }

  recordForged(client: number, id: string, row: LocalRow): void {
    this.#forgedOf(client).set(id, row);
  }

  snapshot(client: number): void {
    this.#sinceSnapshot.set(client, []);
    this.#forgedAtSnapshot.set(client, new Map(this.#forgedOf(client)));
  }

  restore(client: number): void {
    for (const write of this.#since(client)) write.restoredAway = true;
    this.#sinceSnapshot.set(client, []);
    this.forged.set(client, new Map(this.#forgedAtSnapshot.get(client) ?? []));
    // The restored clock starts from the copy's: versions may repeat from here.
    this.#lastVersion.delete(client);
  }

  forgedOf(client: number): ReadonlyMap<string, LocalRow> {
    return this.#forgedOf(client);
  }

  #forgedOf(client: number): Map<string, LocalRow> {
    let map = this.forged.get(client);
    if (map === undefined) this.forged.set(client, map = new Map());
    return map;
  }

  #since(client: number): Write[] {
    let list = this.#sinceSnapshot.get(client);
    if (list === undefined) this.#sinceSnapshot.set(client, list = []);
    return list;
  }

  /**
   * What the server must hold. A write counts unless a restore took it away
   * before it reached the server: then only what a push delivered counts (a
   * held push released after the restore still delivers it).
   */
  expected(delivered: Delivered): Map<TableName, Map<string, ExpectedRow>> {
    const result = new Map<TableName, Map<string, ExpectedRow>>(
      TABLES.map((t) => [t, new Map()]),
    );
    const created = new Map<string, Set<string>>();
    for (const write of this.writes) {
      if (write.kind !== "insert") continue;
      const id = key(write.table, write.id);
      let set = created.get(id);
      if (set === undefined) created.set(id, set = new Set());
      set.add(write.version);
    }
    const createdOf = (table: string, id: string) => created.get(key(table, id)) ?? new Set();

    // Winners per row (or per column): the greatest version, and every
    // write that shares it (a version issued again after a restore; the
    // merge then keeps one of them by value, the same one everywhere).
    const rowWinners = new Map<string, Write[]>();
    const columnWinners = new Map<string, Map<string, Write[]>>();
    const consider = (list: Write[] | undefined, write: Write): Write[] => {
      if (list === undefined || write.version > list[0]!.version) return [write];
      if (write.version === list[0]!.version) list.push(write);
      return list;
    };
    for (const write of this.writes) {
      if (!COLUMN_TABLES.has(write.table)) {
        if (write.restoredAway && !delivered.rows.has(key(write.table, write.id, write.version))) {
          continue;
        }
        const id = key(write.table, write.id);
        rowWinners.set(id, consider(rowWinners.get(id), write));
        continue;
      }
      for (const column of write.written) {
        if (
          write.restoredAway &&
          !delivered.columns.has(key(write.table, write.id, column, write.version))
        ) continue;
        const id = key(write.table, write.id);
        let columns = columnWinners.get(id);
        if (columns === undefined) columnWinners.set(id, columns = new Map());
        columns.set(column, consider(columns.get(column), write));
      }
    }
    for (const writes of rowWinners.values()) {
      const rows = writes.map((write): ExpectedRow => ({
        data: { ...write.data },
        version: write.version,
        deleted: write.deleted,
        columnVersions: undefined,
        createdAt: createdOf(write.table, write.id),
        why: `client ${write.client}'s ${write.kind} at step ${write.step}`,
      }));
      result.get(writes[0]!.table)!.set(writes[0]!.id, { ...rows[0]!, alternatives: rows });
    }
    for (const columns of columnWinners.values()) {
      const any = columns.values().next().value![0]!;
      // Every way to pick one write per column (ties are rare: a few at most).
      let picks: Map<string, Write>[] = [new Map()];
      for (const [column, writes] of columns) {
        picks = picks.flatMap((pick) => writes.map((w) => new Map([...pick, [column, w]])))
          .slice(0, 64);
      }
      const rows = picks.map((pick): ExpectedRow => {
        const data: Record<string, unknown> = {};
        const versions: Record<string, string> = {};
        let version = "";
        let deleted = false;
        for (const [column, write] of pick) {
          versions[column] = write.version;
          if (write.version > version) version = write.version;
          if (column === "is_deleted") deleted = write.deleted;
          else data[column] = write.data[column];
        }
        return {
          data,
          version,
          deleted,
          columnVersions: versions,
          createdAt: createdOf(any.table, any.id),
          why: [...pick].map(([c, w]) => `${c} from client ${w.client} step ${w.step}`).join(", "),
        };
      });
      result.get(any.table)!.set(any.id, { ...rows[0]!, alternatives: rows });
    }
    return result;
  }
}

// ---------------------------------------------------------------------------
// The network between the clients and the server, with faults.

interface Delivered {
  /** `table, id, version` of every pushed change the server answered applied or stale. */
  readonly rows: Set<string>;
  /** `table, id, column, version` of every column version such a change carried. */
  readonly columns: Set<string>;
}

interface Armed {
  readonly kind: FaultKind;
  readonly on: "push" | "pull" | "any";
  remaining: number;
}

interface Outgoing {
  readonly owner: string;
  readonly kind: "push" | "pull";
  readonly path: string;
  readonly body: string;
  readonly headers: Record<string, string>;
}

interface Answer {
  readonly status: number;
  readonly text: string;
}

interface Held extends Outgoing {
  readonly seq: number;
  readonly resolve: (response: Response) => void;
  readonly reject: (error: unknown) => void;
}

// Never dialed: the network routes each request to the server running now.
const BASE_URL = "http://127.0.0.1:9";

class Network {
  server: TestServer | undefined;
  /** False while settling: nothing new is held back. */
  holding = true;
  readonly delivered: Delivered = { rows: new Set(), columns: new Set() };
  readonly trace: string[] = [];
  /** What the run exercised: counters by name (see {@linkcode ScheduleOutcome.stats}). */
  readonly stats: Record<string, number> = {};
  readonly #armed = new Map<number, Armed[]>();
  #held: Held[] = [];
  readonly #active = new Map<string, number>();
  readonly #hooks = new Map<
    string,
    { kind: "push" | "pull"; fire: () => void | Promise<void> }
  >();
  #seq = 0;
  #releasing: Promise<void> = Promise.resolve();

  /** The `fetch` of one client (`client`) in one life of its database (`epoch`). */
  fetchFor(client: number, epoch: number): typeof fetch {
    const owner = `${client}#${epoch}`;
    return (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      const kind = url.pathname.endsWith("/push") ? "push" : "pull";
      const request: Outgoing = {
        owner,
        kind,
        path: url.pathname,
        body: String(init?.body ?? ""),
        headers: { ...(init?.headers as Record<string, string> | undefined) },
      };
      const hook = this.#hooks.get(owner);
      if (hook !== undefined && hook.kind === kind) {
        this.#hooks.delete(owner);
        await hook.fire();
      }
      const fault = this.#take(client, kind);
      const seq = ++this.#seq;
      this.trace.push(`${seq} ${owner} ${kind}${fault === undefined ? "" : ` [${fault}]`}`);
      this.count(kind === "push" ? "pushes" : "pulls");
      if (fault !== undefined) this.count(`fault ${fault} ${kind}`);
      if (fault === "lose_request") throw new TypeError(`fault: ${kind} ${seq} lost on the way`);
      if (fault === "hold" && this.holding) {
        return await new Promise<Response>((resolve, reject) => {
          this.#held.push({ ...request, seq, resolve, reject });
        });
      }
      this.#bump(owner, 1);
      try {
        let answer = await this.#send(request, seq);
        if (fault === "duplicate") answer = await this.#send(request, seq);
        if (fault === "lose_response") {
          throw new TypeError(`fault: the answer to ${kind} ${seq} was lost`);
        }
        return toResponse(answer);
      } finally {
        this.#bump(owner, -1);
        this.#releaseBefore(seq);
      }
    }) as typeof fetch;
  }

  count(name: string, by = 1): void {
    this.stats[name] = (this.stats[name] ?? 0) + by;
  }

  arm(client: number, fault: Armed): void {
    const list = this.#armed.get(client) ?? [];
    list.push(fault);
    this.#armed.set(client, list);
  }

  disarm(): void {
    this.#armed.clear();
  }

  /**
   * Calls `fire` when `owner` next sends a request of `kind`, before it is
   * sent; the request waits for the promise `fire` returns.
   */
  hook(owner: string, kind: "push" | "pull", fire: () => void | Promise<void>): void {
    this.#hooks.set(owner, { kind, fire });
  }

  unhook(owner: string): void {
    this.#hooks.delete(owner);
  }

  /** Requests of `owner` held back. */
  heldOf(owner: string): number {
    return this.#held.filter((h) => h.owner === owner).length;
  }

  /** Requests of `owner` on their way to the server. */
  activeOf(owner: string): number {
    return this.#active.get(owner) ?? 0;
  }

  /** Requests held or on their way, of anyone. */
  get busy(): number {
    let total = this.#held.length;
    for (const n of this.#active.values()) total += n;
    return total;
  }

  /** Sends every held request, one after another, oldest or newest first. */
  releaseAll(order: "oldest" | "newest"): Promise<void> {
    const due = this.#held.splice(0);
    return this.#release(order === "oldest" ? due : due.reverse());
  }

  // Held requests that came before request `seq` go once it is answered,
  // newest first: they arrive after a later one, and out of order.
  #releaseBefore(seq: number): void {
    const due = this.#held.filter((h) => h.seq < seq);
    if (due.length === 0) return;
    this.#held = this.#held.filter((h) => h.seq >= seq);
    void this.#release(due.reverse());
  }

  #release(due: readonly Held[]): Promise<void> {
    for (const held of due) this.#bump(held.owner, 1);
    const run = this.#releasing.then(async () => {
      for (const held of due) {
        this.trace.push(`${held.seq} released`);
        try {
          held.resolve(toResponse(await this.#send(held, held.seq)));
        } catch (error) {
          held.reject(error);
        } finally {
          this.#bump(held.owner, -1);
        }
      }
    });
    this.#releasing = run;
    return run;
  }

  #take(client: number, kind: "push" | "pull"): FaultKind | undefined {
    const list = this.#armed.get(client);
    const armed = list?.find((a) => a.on === "any" || a.on === kind);
    if (armed === undefined) return undefined;
    if (--armed.remaining <= 0) list!.splice(list!.indexOf(armed), 1);
    return armed.kind;
  }

  #bump(owner: string, by: number): void {
    this.#active.set(owner, (this.#active.get(owner) ?? 0) + by);
  }

  async #send(request: Outgoing, seq: number): Promise<Answer> {
    const server = this.server;
    if (server === undefined) {
      throw new TypeError(`fault: ${request.kind} ${seq}: the server is down`);
    }
    const response = await fetch(`${server.url}${request.path}`, {
      method: "POST",
      headers: request.headers,
      body: request.body,
      signal: AbortSignal.timeout(15_000),
    });
    const text = await response.text();
    if (request.kind === "push" && response.ok) this.#recordDelivered(request.body, text);
    if (request.kind === "pull" && text.includes(`"hasMore":true`)) this.count("pages with more");
    return { status: response.status, text };
  }

  #recordDelivered(body: string, text: string): void {
    const changes = (JSON.parse(body) as {
      changes: {
        table: string;
        id: string;
        version: string;
        columnVersions?: Record<string, string>;
      }[];
    }).changes;
    const results = (JSON.parse(text) as { results?: { status?: string }[] }).results ?? [];
    changes.forEach((change, i) => {
      const status = results[i]?.status;
      this.count(`changes ${status}`);
      if (status !== "applied" && status !== "stale") return;
      this.delivered.rows.add(key(change.table, change.id, change.version));
      for (const [column, version] of Object.entries(change.columnVersions ?? {})) {
        this.delivered.columns.add(key(change.table, change.id, column, version));
      }
    });
  }
}

function toResponse(answer: Answer): Response {
  return new Response(answer.text, {
    status: answer.status,
    headers: { "content-type": "application/json" },
  });
}

// ---------------------------------------------------------------------------
// One run of a schedule.

interface Slot {
  readonly index: number;
  readonly nodeId: string;
  readonly principal: string;
  readonly token: string;
  readonly file: string;
  readonly copy: string;
  hasCopy: boolean;
  /** Wall clock offset from the shared time, ms. */
  offset: number;
  epoch: number;
  db: Db;
  manager: ServerSyncManager<Tables>;
  sync: { readonly promise: Promise<void>; settled: boolean } | undefined;
  /** The forged ids it made, in order. */
  readonly forgedIds: string[];
}

class StepTimeout extends Error {}

/** How long one step, or one wait, may take before the schedule counts as hung. */
const STEP_TIMEOUT_MS = 20_000;
/** Most rounds of syncing everyone once the faults are off. */
const MAX_QUIET_ROUNDS = 6;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const end = Date.now() + STEP_TIMEOUT_MS;
  while (!condition()) {
    if (Date.now() > end) throw new StepTimeout(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

async function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StepTimeout(`timed out: ${what}`)), STEP_TIMEOUT_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const isCode = (error: unknown, ...codes: string[]) =>
  codes.includes(String((error as { code?: unknown })?.code));

const bytesOf = (value: unknown) =>
  value !== null && typeof value === "object" && Array.isArray((value as { bytes?: unknown }).bytes)
    ? new Uint8Array((value as { bytes: number[] }).bytes)
    : value;

class Run {
  time = 1_767_225_600_000;
  readonly violations: Violation[] = [];
  readonly model = new Model(this.violations);
  readonly network = new Network();
  readonly slots: Slot[] = [];
  readonly background: Promise<unknown>[] = [];
  readonly #dir = tempDir();
  readonly #serverFile = join(this.#dir.path, "server.db");
  #ids = 0;
  #step = -1; // the prelude
  #lastCopied: Slot | undefined;

  constructor(readonly schedule: Schedule) {}

  get #authorize() {
    return bearer(Object.fromEntries(this.slots.map((s) => [s.token, s.principal])));
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.schedule.clients; i++) {
      const slot = {
        index: i,
        nodeId: `n${i}`,
        principal: `p${Math.floor(i / 2)}`,
        token: `t${i}`,
        file: join(this.#dir.path, `client${i}.db`),
        copy: join(this.#dir.path, `client${i}.copy.db`),
        hasCopy: false,
        offset: 0,
        epoch: 0,
        sync: undefined,
        forgedIds: [],
      } as unknown as Slot;
      this.slots.push(slot);
    }
    await this.#startServer();
    for (const slot of this.slots) await this.#open(slot);
    await this.#prelude();
  }

  // Every schedule starts from rows everyone holds — one per table, `todos`
  // one per principal — so updates and deletes have targets from the first step.
  async #prelude(): Promise<void> {
    const first = this.slots[0]!;
    await this.#insert(first, "tasks", { shared: 0 }, { title: "first task" });
    await this.#insert(first, "notes", { shared: 0 }, { body: "first note", color: "red" });
    await this.#insert(first, "files", { shared: 0 }, {
      name: "first file",
      bytes: { bytes: [0, 1, 255] },
      meta: { n: 0.30000000000000004, max: 2 ** 53 - 1, s: "ü" },
    });
    for (const slot of this.slots) {
      if (slot.index % 2 === 0) {
        await this.#insert(slot, "todos", { shared: 0 }, { title: "first" });
      }
    }
    for (const slot of this.slots) await slot.manager.syncNow();
    for (const slot of this.slots.slice(0, -1)) await slot.manager.syncNow();
    this.time += 1_000;
  }

  async #startServer(): Promise<void> {
    const server = await startServer(syncSchema, {
      url: `file:${this.#serverFile}`,
      now: () => this.time,
      authorize: this.#authorize,
    });
    this.network.server = server;
  }

  async #open(slot: Slot): Promise<void> {
    slot.db = await openDatabase({
      adapter: libsqlAdapter(createClient({ url: `file:${slot.file}` })),
      schema: syncSchema,
      nodeId: slot.nodeId,
      now: () => this.time + slot.offset,
    });
    const http = createHttpSync({
      url: BASE_URL,
      fetch: this.network.fetchFor(slot.index, slot.epoch),
      headers: { authorization: `Bearer ${slot.token}` },
      pullLimit: 1, // pages of one row: paging and the page asked for ahead take part
    });
    // Small batches: several pushes a sync, two in flight.
    slot.manager = new ServerSyncManager<Tables>({ database: slot.db, ...http, batchSize: 2 });
    slot.sync = undefined;
  }

  async #close(slot: Slot): Promise<void> {
    if (slot.sync !== undefined) this.background.push(slot.sync.promise.catch(() => undefined));
    await slot.db.close();
    slot.epoch++;
  }

  #slot(c: number): Slot {
    return this.slots[c % this.slots.length]!;
  }

  #owner(slot: Slot): string {
    return `${slot.index}#${slot.epoch}`;
  }

  #blocked(slot: Slot): boolean {
    const owner = this.#owner(slot);
    return this.network.heldOf(owner) > 0 && this.network.activeOf(owner) === 0;
  }

  /** Waits until every client's sync has finished or waits on a held request. */
  async settle(): Promise<void> {
    await waitUntil(
      () => this.slots.every((s) => s.sync === undefined || s.sync.settled || this.#blocked(s)),
      "the syncs to finish or wait on a held request",
    );
  }

  async runStep(step: Step, index: number): Promise<void> {
    this.#step = index;
    this.time += 3;
    this.network.trace.push(`-- step ${index} ${JSON.stringify(step)}`);
    switch (step.t) {
      case "insert":
        return await this.#insert(this.#slot(step.c), step.table, step.id, step.values);
      case "update":
        return await this.#update(this.#slot(step.c), step.target, step.patch);
      case "delete":
        return await this.#delete(this.#slot(step.c), step.target);
      case "forge":
        return await this.#forge(this.#slot(step.c), step.victim, step.title);
      case "sync":
        await this.#sync(this.#slot(step.c));
        if (step.wait) await this.settle();
        return;
      case "fault": {
        const slot = this.#slot(step.c);
        this.network.arm(slot.index, { kind: step.fault, on: step.on, remaining: step.count });
        return await this.#sync(slot);
      }
      case "faultsOff":
        this.network.disarm();
        return;
      case "release":
        await bounded(this.network.releaseAll(step.order), "releasing held requests");
        return await this.settle();
      case "restartServer":
        return await this.#restartServer();
      case "restartClient":
        return await this.#restartClient(this.#slot(step.c), step.during);
      case "skew":
        this.#slot(step.c).offset = step.offset;
        return;
      case "stepBack": {
        const slot = this.#slot(step.c);
        slot.offset = Math.max(-25_000, slot.offset - step.ms);
        if (step.restart) await this.#restartClient(slot, "idle");
        return;
      }
      case "duringSync":
        return await this.#duringSync(this.#slot(step.c), step.during, step.write);
      case "advance":
        this.time += step.ms;
        return;
      case "snapshot":
        return await this.#snapshot(this.#slot(step.c));
      case "restore":
        return await this.#restore(this.#slot(step.c));
    }
  }

  #sharedId(slot: Slot, table: TableName, n: number): string {
    // `todos` ids are shared by the clients of one principal only: another
    // principal's row of that id would be a scope violation of its own.
    return table === "todos" ? `todos-${slot.principal}-s${n}` : `${table}-s${n}`;
  }

  async #target(
    slot: Slot,
    target: Target,
  ): Promise<{ table: TableName; id: string } | undefined> {
    if ("shared" in target) {
      return { table: target.table, id: this.#sharedId(slot, target.table, target.shared) };
    }
    if ("forged" in target) {
      const id = slot.forgedIds[target.forged % Math.max(1, slot.forgedIds.length)];
      return id === undefined ? undefined : { table: "todos", id };
    }
    const rows = await slot.db.query(
      TABLES.map((t, i) =>
        `SELECT ${i} AS n, '${t}' AS t, system_id FROM "${t}" WHERE is_deleted = 0`
      )
        .join(" UNION ALL ") + ` ORDER BY n, system_id`,
    );
    const row = rows[target.row % Math.max(1, rows.length)];
    return row === undefined ? undefined : { table: row.t as TableName, id: String(row.system_id) };
  }

  // The patch on the target's table: one value of the column's kind per position set.
  #patchFor(table: TableName, patch: Patch): Record<string, unknown> {
    const columns = UPDATABLE[table];
    const given: Record<string, unknown> = {};
    for (const position of patch.set) {
      const name = columns[position % columns.length]!;
      const column = INFOS.get(table)!.byName.get(name)!;
      given[name] = column.kind === "text"
        ? (column.notNull ? patch.text : patch.nullableText)
        : column.kind === "integer"
        ? patch.integer
        : column.kind === "boolean"
        ? patch.boolean
        : column.kind === "blob"
        ? bytesOf(patch.blob)
        : patch.json;
    }
    for (const position of patch.unset) given[columns[position % columns.length]!] = undefined;
    return given;
  }

  // A write the database refused as the schedule may make it (an id that is
  // taken, a row that is gone) leaves nothing to record; anything else is a finding.
  async #attempt<T>(what: string, write: () => Promise<T>): Promise<T | undefined> {
    try {
      return await write();
    } catch (error) {
      if (isCode(error, "constraint", "not_found")) {
        this.network.count("writes refused (id taken, row gone)");
        return undefined;
      }
      this.violations.push({
        property: "harness",
        message: `step ${this.#step}: ${what} failed: ${(error as Error)?.stack ?? error}`,
      });
      return undefined;
    }
  }

  #values(table: TableName, values: Readonly<Record<string, unknown>>): Record<string, unknown> {
    const info = INFOS.get(table)!;
    const out: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(values)) {
      out[name] = info.byName.get(name)?.kind === "blob" ? bytesOf(value) : value;
    }
    return out;
  }

  #recordRow(
    slot: Slot,
    table: TableName,
    kind: Write["kind"],
    row: Record<string, unknown>,
    written: readonly string[],
  ): void {
    const info = INFOS.get(table)!;
    const data: Record<string, unknown> = {};
    for (const column of info.columns) {
      data[column.name] = canonDecoded(column.kind, row[column.name]);
    }
    const id = String(row.system_id);
    const version = String(row.system_version);
    const deleted = Number(row.is_deleted) === 1;
    if (id.startsWith("forged-")) {
      this.model.recordForged(slot.index, id, { version, deleted, data });
      return;
    }
    this.model.record({
      step: this.#step,
      client: slot.index,
      table,
      id,
      kind,
      version,
      deleted,
      data,
      written,
      restoredAway: false,
    });
  }

  async #insert(
    slot: Slot,
    table: TableName,
    ref: "new" | { shared: number },
    values: Readonly<Record<string, unknown>>,
  ): Promise<void> {
    const id = ref === "new" ? `${table}-f${this.#ids++}` : this.#sharedId(slot, table, ref.shared);
    const given: Record<string, unknown> = { ...this.#values(table, values), system_id: id };
    if (table === "todos") given.owner = slot.principal;
    const row = await this.#attempt(
      `insert ${table}/${id}`,
      () => slot.db.insert(table, given as never) as Promise<Record<string, unknown>>,
    );
    if (row === undefined) return;
    const columns = INFOS.get(table)!.columns.map((c) => c.name);
    this.#recordRow(slot, table, "insert", row, [...columns, "is_deleted"]);
  }

  async #update(slot: Slot, target: Target, patch: Patch): Promise<void> {
    const found = await this.#target(slot, target);
    if (found === undefined) return this.network.count("writes without a target row");
    const { table, id } = found;
    const given = this.#patchFor(table, patch);
    const written = Object.entries(given).filter(([, v]) => v !== undefined).map(([k]) => k);
    const update = () =>
      slot.db.update(table, id, given as never) as Promise<Record<string, unknown>>;
    // A patch that sets nothing may write nothing: the version before it,
    // read in the same transaction, tells whether it stamped a new one.
    const row = await this.#attempt(
      `update ${table}/${id}`,
      written.length > 0 ? update : () =>
        slot.db.transaction(async (tx) => {
          const before = await tx.get(table, id) as Record<string, unknown> | undefined;
          const after = await tx.update(table, id, given as never) as Record<string, unknown>;
          return after.system_version === before?.system_version ? null : after;
        }),
    );
    if (row === undefined || row === null) return;
    this.#recordRow(slot, table, "update", row, written);
  }

  async #delete(slot: Slot, target: Target): Promise<void> {
    const found = await this.#target(slot, target);
    if (found === undefined) return this.network.count("writes without a target row");
    const { table, id } = found;
    // Read back in the same transaction: no merge can come between.
    const row = await this.#attempt(
      `delete ${table}/${id}`,
      () =>
        slot.db.transaction(async (tx) => {
          await tx.delete(table, id);
          return await tx.get(table, id, { includeDeleted: true }) as Record<string, unknown>;
        }),
    );
    if (row === undefined) return;
    this.#recordRow(slot, table, "delete", row, ["is_deleted"]);
  }

  async #forge(slot: Slot, victim: number, title: string): Promise<void> {
    const others = [...new Set(this.slots.map((s) => s.principal))].filter((p) =>
      p !== slot.principal
    );
    const owner = others[victim % others.length]!;
    const id = `forged-c${slot.index}-${this.#ids++}`;
    slot.forgedIds.push(id);
    const row = await this.#attempt(
      `forge todos/${id}`,
      () => slot.db.insert("todos", { system_id: id, owner, title } as never),
    );
    if (row !== undefined) this.#recordRow(slot, "todos", "insert", row, []);
  }

  // Starts a sync (or joins the running one) and, once it resolves, checks
  // that it sent what waited in the outbox when it was called.
  async #sync(slot: Slot): Promise<void> {
    const { db, epoch, manager } = slot;
    const step = this.#step;
    const before = await db.query(`SELECT table_name, row_id, version FROM _dirty_rows`);
    const promise = manager.syncNow();
    const state = { promise, settled: false };
    slot.sync = state;
    this.network.count("syncs");
    promise.then(
      () => this.network.count("syncs resolved"),
      () => this.network.count("syncs failed"),
    );
    const checked = promise.then(
      () => this.#checkSent(slot, epoch, db, before, step),
      () => undefined,
    ).finally(() => {
      state.settled = true;
    });
    this.background.push(checked);
  }

  async #checkSent(
    slot: Slot,
    epoch: number,
    db: Db,
    before: readonly Record<string, unknown>[],
    step: number,
  ): Promise<void> {
    if (slot.epoch !== epoch || before.length === 0) return;
    let after: Record<string, unknown>[];
    try {
      after = await db.query(`SELECT table_name, row_id, version FROM _dirty_rows`);
    } catch {
      return; // closed meanwhile
    }
    if (slot.epoch !== epoch) return;
    const now = new Map(after.map((r) => [key(String(r.table_name), String(r.row_id)), r]));
    for (const entry of before) {
      const still = now.get(key(String(entry.table_name), String(entry.row_id)));
      if (still === undefined || String(still.version) > String(entry.version)) continue;
      this.violations.push({
        property: "sync_now",
        message: `client ${slot.index}: syncNow() of step ${step} resolved, yet ` +
          `${entry.table_name}/${entry.row_id} at ${entry.version}, waiting when it was ` +
          `called, is still in the outbox`,
      });
    }
  }

  // Holds the client's next request of `during` until a write and a second
  // syncNow() have been made, so both happen while that request is on the wire.
  async #duringSync(slot: Slot, during: "push" | "pull", write: Step): Promise<void> {
    if (write.t !== "insert" && write.t !== "update" && write.t !== "delete") return;
    const owner = this.#owner(slot);
    let fired = false;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    this.network.hook(owner, during, () => {
      fired = true;
      return gate;
    });
    try {
      if (slot.sync === undefined || slot.sync.settled) await this.#sync(slot);
      const sync = slot.sync!;
      await waitUntil(
        () => fired || sync.settled || this.#blocked(slot),
        `client ${slot.index}'s ${during}`,
      );
      if (!fired) return;
      await this.runStep({ ...write, c: slot.index }, this.#step);
      await this.#sync(slot);
    } finally {
      this.network.unhook(owner);
      open();
    }
  }

  async #restartServer(): Promise<void> {
    const server = this.network.server;
    this.network.server = undefined;
    if (server !== undefined) await bounded(server.close(), "closing the server");
    await this.#startServer();
  }

  async #restartClient(slot: Slot, during: "push" | "pull" | "idle"): Promise<void> {
    let closing: Promise<void> | undefined;
    if (during !== "idle") {
      const owner = this.#owner(slot);
      this.network.hook(owner, during, () => {
        closing = this.#close(slot);
      });
      if (slot.sync === undefined || slot.sync.settled) await this.#sync(slot);
      const sync = slot.sync!;
      await waitUntil(
        () => closing !== undefined || sync.settled || this.#blocked(slot),
        `client ${slot.index}'s ${during}`,
      );
      this.network.unhook(owner);
    }
    await bounded(closing ?? this.#close(slot), `closing client ${slot.index}`);
    await this.#open(slot);
  }

  async #snapshot(slot: Slot): Promise<void> {
    await bounded(this.#close(slot), `closing client ${slot.index}`);
    copyDatabase(slot.file, slot.copy);
    slot.hasCopy = true;
    this.#lastCopied = slot;
    this.model.snapshot(slot.index);
    await this.#open(slot);
  }

  // A client without a copy stands for the one copied last: restores happen.
  async #restore(chosen: Slot): Promise<void> {
    const slot = chosen.hasCopy ? chosen : this.#lastCopied;
    if (slot === undefined) return;
    await bounded(this.#close(slot), `closing client ${slot.index}`);
    copyDatabase(slot.copy, slot.file);
    this.model.restore(slot.index);
    await this.#open(slot);
  }

  /** Faults off; everyone syncs until a full round changes nothing and the outboxes are empty. */
  async quiesce(): Promise<void> {
    this.network.disarm();
    this.network.holding = false;
    await bounded(this.network.releaseAll("oldest"), "releasing held requests");
    await bounded(Promise.all(this.background), "the syncs started by the schedule");
    await waitUntil(() => this.network.busy === 0, "the network to drain");
    let previous = "";
    for (let round = 1; round <= MAX_QUIET_ROUNDS; round++) {
      const errors: string[] = [];
      for (const slot of this.slots) {
        try {
          await bounded(slot.manager.syncNow(), `client ${slot.index}'s sync`);
        } catch (error) {
          errors.push(`client ${slot.index}: ${(error as Error)?.message ?? error}`);
        }
      }
      const print = await this.#fingerprint();
      const waiting = await this.#outboxSizes();
      if (errors.length === 0 && print === previous && waiting.every((n) => n === 0)) return;
      if (round === MAX_QUIET_ROUNDS) {
        this.violations.push({
          property: "quiesce",
          message: `no quiet round after ${round} rounds with the faults off` +
            (errors.length > 0 ? `; the last one failed: ${errors.join("; ")}` : "") +
            `; outboxes ${JSON.stringify(waiting)}`,
        });
      }
      previous = print;
    }
  }

  async #fingerprint(): Promise<string> {
    const parts = [await dumpServerFile(this.#serverFile)];
    for (const slot of this.slots) parts.push(await dumpReplica(slot.db));
    return JSON.stringify(parts.map((dumps) => [...dumps].map(([t, rows]) => [t, [...rows]])));
  }

  async #outboxSizes(): Promise<number[]> {
    const sizes: number[] = [];
    for (const slot of this.slots) sizes.push(await slot.db.countDirtyRows());
    return sizes;
  }

  /** Checks the end state against the server, the oracle and the outboxes. */
  async check(): Promise<void> {
    this.#countCoverage();
    const server = await dumpServerFile(this.#serverFile);
    this.#checkOracle(server);
    for (const slot of this.slots) await this.#checkReplica(slot, server);
  }

  // Rows and columns that more than one client wrote: where merging decides.
  #countCoverage(): void {
    const writers = new Map<string, Set<number>>();
    for (const write of this.model.writes) {
      this.network.count(`writes ${write.kind}`);
      if (write.restoredAway) this.network.count("writes made after a copy that was restored");
      const targets = COLUMN_TABLES.has(write.table)
        ? write.written.map((c) => key(write.table, write.id, c))
        : [key(write.table, write.id)];
      for (const target of targets) {
        const set = writers.get(target) ?? new Set();
        set.add(write.client);
        writers.set(target, set);
      }
    }
    for (const [target, set] of writers) {
      if (set.size < 2) continue;
      const [table, , column] = target.split("\u0000");
      this.network.count(
        column === undefined ? `contended ${table} rows` : `contended ${table} columns`,
      );
    }
    for (const forged of this.model.forged.values()) this.network.count("forged rows", forged.size);
  }

  #checkOracle(server: TableDumps): void {
    const expected = this.model.expected(this.network.delivered);
    for (const table of TABLES) {
      const want = expected.get(table)!;
      const have = server.get(table)!;
      for (const [id, row] of want) {
        const stored = have.get(id);
        if (stored === undefined) {
          this.#fail("oracle", `server lacks ${table}/${id} (expected from ${row.why})`);
          continue;
        }
        const diffs = (row.alternatives ?? [row]).map((alternative) => {
          const wanted: Dump = { ...stored, ...alternative.data };
          wanted.system_version = alternative.version;
          wanted.is_deleted = alternative.deleted ? 1 : 0;
          if (alternative.columnVersions !== undefined) {
            wanted.system_column_versions = sortedJson(alternative.columnVersions);
          }
          return rowDiff(stored, wanted, "server", "oracle");
        });
        if (!diffs.includes("")) {
          this.#fail("oracle", `${table}/${id}: ${diffs[0]} (oracle: ${row.why})`);
        }
        if (!row.createdAt.has(String(stored.system_created_at))) {
          this.#fail(
            "oracle",
            `${table}/${id}: system_created_at ${stored.system_created_at} is not the version ` +
              `of an insert of the row (${[...row.createdAt].join(", ")})`,
          );
        }
      }
      for (const id of have.keys()) {
        if (!want.has(id)) this.#fail("oracle", `server holds ${table}/${id}, which no write kept`);
      }
    }
  }

  async #checkReplica(slot: Slot, server: TableDumps): Promise<void> {
    const name = `client ${slot.index} (${slot.nodeId}, ${slot.principal})`;
    const replica = await dumpReplica(slot.db);
    const forged = this.model.forgedOf(slot.index);
    for (const table of TABLES) {
      const mine = replica.get(table)!;
      const theirs = new Map(
        [...server.get(table)!].filter(([, row]) =>
          table !== "todos" || row.owner === slot.principal
        ),
      );
      for (const [id, row] of theirs) {
        const local = mine.get(id);
        if (local === undefined) {
          this.#fail("converged", `${name} lacks ${table}/${id} (server ${row.system_version})`);
          continue;
        }
        const diff = rowDiff(local, row, "replica", "server");
        if (diff !== "") this.#fail("converged", `${name} ${table}/${id}: ${diff}`);
      }
      for (const [id, local] of mine) {
        if (theirs.has(id)) continue;
        const kept = table === "todos" ? forged.get(id) : undefined;
        if (kept === undefined) {
          this.#fail("converged", `${name} holds ${table}/${id}, which the server has not`);
          continue;
        }
        const wanted: Dump = { ...local, ...kept.data };
        wanted.system_version = kept.version;
        wanted.is_deleted = kept.deleted ? 1 : 0;
        const diff = rowDiff(local, wanted, "replica", "its own last write");
        if (diff !== "") this.#fail("rejected", `${name} todos/${id} (refused): ${diff}`);
      }
    }
    for (const id of forged.keys()) {
      if (!replica.get("todos")!.has(id)) {
        this.#fail("rejected", `${name} lost its row todos/${id}`);
      }
    }

    const waiting = await slot.db.query(`SELECT table_name, row_id, version FROM _dirty_rows`);
    for (const entry of waiting) {
      this.#fail(
        "outbox",
        `${name} still has ${entry.table_name}/${entry.row_id} at ${entry.version}`,
      );
    }
    const status = slot.manager.status;
    if (status.pending !== 0 || status.state !== "idle") {
      this.#fail("outbox", `${name} manager status ${status.state} with ${status.pending} pending`);
    }

    const rejected = await slot.db.query(
      `SELECT table_name, row_id, version, code FROM _sync_rejected ORDER BY table_name, row_id`,
    );
    const seen = new Set<string>();
    for (const entry of rejected) {
      const id = String(entry.row_id);
      seen.add(id);
      const kept = entry.table_name === "todos" ? forged.get(id) : undefined;
      if (kept === undefined) {
        this.#fail(
          "rejected",
          `${name} has ${entry.table_name}/${id} rejected (${entry.code}), a change the schedule did not make invalid`,
        );
      } else if (entry.code !== "forbidden" || entry.version !== kept.version) {
        this.#fail(
          "rejected",
          `${name} todos/${id}: rejected as ${entry.code} at ${entry.version}, expected forbidden at ${kept.version}`,
        );
      }
    }
    for (const id of forged.keys()) {
      if (!seen.has(id)) {
        this.#fail(
          "rejected",
          `${name} wrote todos/${id} into another scope, yet it is not rejected`,
        );
      }
    }
  }

  #fail(property: string, message: string): void {
    this.violations.push({ property, message });
  }

  /** Stops everything the run started, within bounds, and removes its files. */
  async cleanup(): Promise<void> {
    this.network.disarm();
    this.network.holding = false;
    const quietly = async (promise: Promise<unknown>) => {
      try {
        await bounded(promise, "cleanup");
      } catch {
        // best effort: the run has failed already if this hangs
      }
    };
    await quietly(this.network.releaseAll("oldest"));
    await quietly(Promise.all(this.background));
    for (const slot of this.slots) {
      if (slot.db !== undefined) await quietly(slot.db.close());
    }
    if (this.network.server !== undefined) await quietly(this.network.server.close());
    this.network.server = undefined;
    this.#dir.cleanup();
  }
}

function copyDatabase(from: string, to: string): void {
  for (const suffix of ["-wal", "-shm", "-journal"]) {
    if (existsSync(to + suffix)) rmSync(to + suffix);
  }
  copyFileSync(from, to);
  for (const suffix of ["-wal", "-shm", "-journal"]) {
    if (existsSync(from + suffix)) copyFileSync(from + suffix, to + suffix);
  }
}

/** What one schedule did: the violations found (none: it passed) and a trace of its requests. */
export interface ScheduleOutcome {
  /** The properties that failed. */
  readonly violations: readonly Violation[];
  /** Steps and requests, in order (`n owner kind [fault]`). */
  readonly trace: readonly string[];
  /** Counters of what it exercised: requests, faults fired, writes, contended rows … */
  readonly stats: Readonly<Record<string, number>>;
}

/** Runs one schedule, then settles and checks; never throws for a failed property. */
export async function runSchedule(schedule: Schedule): Promise<ScheduleOutcome> {
  const run = new Run(schedule);
  try {
    await run.start();
    for (const [index, step] of schedule.steps.entries()) {
      await bounded(run.runStep(step, index), `step ${index}`);
      if (!(step.t === "sync" && !step.wait)) await run.settle();
    }
    await run.quiesce();
    await run.check();
  } catch (error) {
    run.violations.push({
      property: error instanceof StepTimeout ? "quiesce" : "harness",
      message: `the run stopped: ${(error as Error)?.stack ?? error}`,
    });
  } finally {
    await run.cleanup();
  }
  return { violations: run.violations, trace: run.network.trace, stats: run.network.stats };
}

/** The error a failed schedule throws inside the property: its violations and trace. */
export class ScheduleFailure extends Error {
  /** Creates the error. */
  constructor(readonly outcome: ScheduleOutcome) {
    super(formatViolations(outcome.violations));
    this.name = "ScheduleFailure";
  }
}

/** Violations as lines, grouped by property, at most `limit` each. */
export function formatViolations(violations: readonly Violation[], limit = 8): string {
  const byProperty = new Map<string, string[]>();
  for (const v of violations) {
    const list = byProperty.get(v.property) ?? [];
    list.push(v.message);
    byProperty.set(v.property, list);
  }
  const lines: string[] = [];
  for (const [property, messages] of byProperty) {
    lines.push(`[${property}] ${messages.length} violation(s)`);
    for (const message of messages.slice(0, limit)) lines.push(`  - ${message}`);
    if (messages.length > limit) lines.push(`  … and ${messages.length - limit} more`);
  }
  return lines.join("\n");
}

/** Options of {@linkcode checkConvergence}. */
export interface ConvergenceOptions extends ScheduleShape {
  /** fast-check seed. */
  readonly seed: number;
  /** Schedules to run. */
  readonly numRuns: number;
  /** fast-check replay path (with `seed`). */
  readonly path?: string;
  /**
   * Time (ms) shrinking may take after the first failure; then the smallest
   * failing schedule found so far is reported (default 60,000).
   */
  readonly shrinkBudgetMs?: number;
}

/** The outcome of {@linkcode checkConvergence}. */
export interface ConvergenceResult {
  /** True when a schedule failed. */
  readonly failed: boolean;
  /** Schedules that passed. */
  readonly passed: number;
  /** For a failure: seed, replay hints, the shrunk schedule, the violations and the trace. */
  readonly report: string;
  /** What the passing schedules exercised, summed (see {@linkcode ScheduleOutcome.stats}). */
  readonly stats: Readonly<Record<string, number>>;
}

/** Counters as one line each, by name. */
export function formatStats(stats: Readonly<Record<string, number>>): string {
  return Object.entries(stats)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, n]) => `  ${String(n).padStart(6)} ${name}`)
    .join("\n");
}

/**
 * Runs `numRuns` schedules from `seed` and, on a failure, shrinks it to a
 * small schedule (within `shrinkBudgetMs`).
 */
export async function checkConvergence(options: ConvergenceOptions): Promise<ConvergenceResult> {
  const budget = options.shrinkBudgetMs ?? 60_000;
  let firstFailure: number | undefined;
  let passed = 0;
  const stats: Record<string, number> = {};
  const property = fc.asyncProperty(scheduleArbitrary(options), async (schedule) => {
    // Past the budget, a shrinking candidate counts as passing: fast-check
    // then reports the smallest failure it has.
    if (firstFailure !== undefined && Date.now() - firstFailure > budget) return;
    const outcome = await runSchedule(schedule);
    if (outcome.violations.length > 0) {
      firstFailure ??= Date.now();
      throw new ScheduleFailure(outcome);
    }
    if (firstFailure !== undefined) return;
    passed++;
    for (const [name, n] of Object.entries(outcome.stats)) stats[name] = (stats[name] ?? 0) + n;
  });
  const details = await fc.check(property, {
    seed: options.seed,
    numRuns: options.numRuns,
    ...(options.path === undefined ? {} : { path: options.path }),
  });
  if (!details.failed) {
    return { failed: false, passed, report: `${passed} schedules passed`, stats };
  }
  const schedule = details.counterexample?.[0] as Schedule | undefined;
  const failure = details.errorInstance instanceof ScheduleFailure
    ? details.errorInstance
    : undefined;
  const lines = [
    `Convergence under faults failed: seed ${details.seed}, path "${details.counterexamplePath}", ` +
    `after ${passed} passing schedules (${details.numShrinks} shrinks).`,
    `Replay: FUZZ_SEED=${details.seed} FUZZ_PATH="${details.counterexamplePath}", or ` +
    `FUZZ_SCHEDULE='<the JSON below>'.`,
    schedule === undefined
      ? "(no counterexample)"
      : `Shrunk schedule:\n${formatSchedule(schedule)}`,
    failure === undefined
      ? `Error: ${(details.errorInstance as Error)?.stack ?? details.errorInstance}`
      : `Violations:\n${failure.message}\nTrace:\n  ${failure.outcome.trace.join("\n  ")}`,
  ];
  return { failed: true, passed, report: lines.join("\n"), stats };
}

const patchOf = (text: string): Patch => ({
  set: [0],
  unset: [],
  text,
  nullableText: null,
  integer: 0,
  boolean: false,
  blob: null,
  json: null,
});

/**
 * Schedules of known hazards, replayed as they are (the prelude's rows:
 * `tasks-s0`, `notes-s0`, `files-s0`, `todos-p0-s0` …).
 */
export const REGRESSIONS: Readonly<Record<string, Schedule>> = {
  "two clients insert one id: every replica ends with the same system_created_at": {
    clients: 3,
    steps: [
      { t: "insert", c: 0, table: "tasks", id: { shared: 1 }, values: { title: "a" } },
      { t: "insert", c: 1, table: "tasks", id: { shared: 1 }, values: { title: "b" } },
      { t: "sync", c: 0, wait: true },
      { t: "sync", c: 1, wait: true },
    ],
  },
  "a row inserted and deleted before its push keeps its creation version": {
    clients: 3,
    steps: [
      { t: "insert", c: 0, table: "tasks", id: { shared: 1 }, values: { title: "brief" } },
      { t: "delete", c: 0, target: { table: "tasks", shared: 1 } },
      { t: "sync", c: 0, wait: true },
    ],
  },
  "an empty update of a column-table row leaves every replica equal": {
    clients: 3,
    steps: [
      {
        t: "update",
        c: 1,
        target: { table: "notes", shared: 0 },
        patch: { ...patchOf(""), set: [] },
      },
      {
        t: "update",
        c: 2,
        target: { table: "notes", shared: 0 },
        patch: { ...patchOf(""), set: [], unset: [0, 2] },
      },
      { t: "sync", c: 1, wait: true },
      { t: "sync", c: 2, wait: true },
    ],
  },
  "a replica restored from a copy gets back what it pushed after the copy": {
    clients: 3,
    steps: [
      { t: "snapshot", c: 0 },
      { t: "insert", c: 0, table: "tasks", id: { shared: 1 }, values: { title: "pushed" } },
      { t: "sync", c: 0, wait: true },
      { t: "restore", c: 0 },
    ],
  },
  "a write lost to a restore before it reached the server is gone everywhere": {
    clients: 3,
    steps: [
      { t: "snapshot", c: 0 },
      { t: "insert", c: 0, table: "tasks", id: { shared: 1 }, values: { title: "lost" } },
      { t: "fault", c: 0, fault: "lose_request", on: "push", count: 1 },
      { t: "restore", c: 0 },
    ],
  },
  "a push held back across a restore still lands": {
    clients: 3,
    steps: [
      { t: "snapshot", c: 0 },
      {
        t: "insert",
        c: 0,
        table: "files",
        id: { shared: 1 },
        values: { name: "f", bytes: { bytes: [0, 255] }, meta: { a: 0.30000000000000004 } },
      },
      { t: "fault", c: 0, fault: "hold", on: "push", count: 1 },
      { t: "restore", c: 0 },
      { t: "sync", c: 1, wait: true },
    ],
  },
  "syncNow() during a running sync sends what was written after that sync began": {
    clients: 3,
    steps: [
      { t: "insert", c: 0, table: "tasks", id: { shared: 1 }, values: { title: "first" } },
      { t: "fault", c: 0, fault: "hold", on: "pull", count: 1 },
      { t: "insert", c: 0, table: "tasks", id: "new", values: { title: "during" } },
      { t: "sync", c: 0, wait: true },
      { t: "release", order: "oldest" },
    ],
  },
  "a replica restored from a copy that issues a version again converges on one of the two writes": {
    clients: 3,
    steps: [
      // Client 1's clock runs 20 s ahead; client 0 pulls its row, and its
      // clock follows: from here it stamps versions ahead of its wall clock.
      { t: "skew", c: 1, offset: 20_000 },
      { t: "insert", c: 1, table: "tasks", id: "new", values: { title: "ahead" } },
      { t: "sync", c: 1, wait: true },
      { t: "sync", c: 0, wait: true },
      { t: "snapshot", c: 0 },
      { t: "update", c: 0, target: { table: "tasks", shared: 0 }, patch: patchOf("one") },
      { t: "sync", c: 0, wait: true },
      { t: "restore", c: 0 },
      // The copy's clock issues the same version again, for other content.
      { t: "update", c: 0, target: { table: "tasks", shared: 0 }, patch: patchOf("two") },
      { t: "sync", c: 0, wait: true },
    ],
  },
};

/** The report of one replayed schedule. */
export async function replaySchedule(schedule: Schedule): Promise<ConvergenceResult> {
  const outcome = await runSchedule(schedule);
  if (outcome.violations.length === 0) {
    return { failed: false, passed: 1, report: "1 schedules passed", stats: outcome.stats };
  }
  return {
    failed: true,
    passed: 0,
    report: `Replayed schedule failed:\n${formatSchedule(schedule)}\nViolations:\n${
      formatViolations(outcome.violations)
    }\nTrace:\n  ${outcome.trace.join("\n  ")}`,
    stats: outcome.stats,
  };
}
