/**
 * Load harness: many real client replicas pushing and pulling mixed batches
 * against one sync server over loopback HTTP, then a check that nothing was
 * lost and that every replica converged.
 *
 * ```sh
 * node --import tsx bench/load.ts                 # 60 s, 32 clients, on Node
 * node_modules/.bin/deno run -A bench/load.ts --seconds 20
 * node_modules/.bin/bun bench/load.ts --clients 64
 * node --import tsx bench/load.ts --runtime all   # node, deno, bun one after the other
 * LOAD_SECONDS=600 node --import tsx bench/load.ts  # a longer soak
 * ```
 *
 * Flags (or environment): `--seconds` (`LOAD_SECONDS`, default 60), `--clients`
 * (`LOAD_CLIENTS`, default 32), `--warmup` (`LOAD_WARMUP`, seconds, default
 * 10), `--store memory|file|mixed` (`LOAD_STORE`, the clients' libSQL
 * databases, default mixed: every other client on a `file:`), `--seed`
 * (`LOAD_SEED`, printed: the values and choices of each client's writes; which
 * rows an update finds still depends on the timing of the syncs), `--runtime
 * node|deno|bun|all` (default: the runtime running this file; others run as
 * child processes, one after the other).
 *
 * The server is `server/main.ts`, as deployed, in a child process of the same
 * runtime, on a fresh `file:` database (WAL) with this file's {@linkcode schema}
 * (`--schema bench/load.ts`; this file runs its load only when it is the entry
 * point). Its per-request log lines are parsed to count requests and status
 * codes at the server; its RSS is read from `/proc/<pid>/status` every second.
 *
 * Every client is a real replica in this process: `openDatabase` over libSQL,
 * `createHttpSync` (its `fetch` wrapped to time every request and see every
 * status) and `ServerSyncManager`. Each runs two loops at once, as an app
 * does: one writes batches of 1–50 inserts, updates and deletes in one
 * transaction, to a row-LWW table and a column-LWW table, with a few blob and
 * JSON values, updating and deleting rows other clients made as well as its
 * own; the other calls `manager.syncNow()` with short random pauses, so writes
 * land while a send is in flight. Each client keeps, per row, its newest write
 * (table, id, the returned row's version and values): its versions only grow,
 * so checking the newest covers the older ones.
 *
 * What it guards against, each a check that fails the run (exit 1):
 * - errors: a non-2xx answer (seen by the clients or logged by the server), a
 *   request that threw, a `syncNow()` or a write transaction that failed, a
 *   change the server rejected, anything the server printed on stderr;
 * - a leak: the server's RSS at the end of the load against after the warm-up
 *   (medians of 5 s windows; flat = at most 20 % or 30 MB more), or else its
 *   idle RSS after the checks against the same bound: a heap that was only
 *   sized up under load is handed back then, a leak is not. Deno's server heap keeps
 *   growing for about two minutes before it levels off, so a leak hunt on
 *   Deno wants `--warmup 120 --seconds 600`;
 * - lost writes: after the load stops, every client syncs until its outbox is
 *   empty, then once more; every write a client made must be on the server at
 *   a version at least the one written (per column for column tables), with
 *   the written values where the version is the same;
 * - divergence: every replica must then equal the server row for row (ids,
 *   versions, tombstones, values, column versions), and the server's pull
 *   must return exactly the rows stored in its database file.
 *
 * Prints a Markdown table and, as the last line of stdout, one JSON object
 * ({@linkcode LoadReport}; with `--runtime all`, `{ ok, runs: LoadReport[] }`).
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import process from "node:process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual, parseArgs } from "node:util";
import { createClient } from "@libsql/client";
import { blob, boolean, defineSchema, integer, json, real, table, text } from "../src/schema.ts";
import { type Database, openDatabase, type Transaction } from "../src/database.ts";
import { createHttpSync } from "../src/http_sync.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { PROTOCOL_VERSION, type PullResponse, type PullRow } from "../src/protocol.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import { describeTables, type TableInfo } from "../src/table_info.ts";
import { dataToWire } from "../src/wire.ts";
import {
  formatMb,
  formatNumber,
  markdownTable,
  progress,
  runtimeCommand,
  runtimeInfo,
  tempDir,
} from "./lib.ts";

/**
 * The load's schema: a row-LWW table and a column-LWW table, with every
 * column kind. Exported for the server child (`--schema bench/load.ts`).
 */
export const schema = defineSchema({
  items: table({
    title: text().notNull(),
    count: integer().notNull().default(0),
    score: real(),
    payload: blob(),
    meta: json<Record<string, unknown>>(),
  }, { withSystemColumns: true }),
  notes: table({
    body: text().notNull().default(""),
    pinned: boolean().notNull().default(false),
    rank: integer(),
    tags: json<string[]>(),
  }, { withSystemColumns: true, lww: "column" }),
});

type LoadTables = typeof schema.tables;
type LoadDb = Database<LoadTables>;
type TableName = keyof LoadTables & string;

const TABLES: readonly TableName[] = ["items", "notes"];
const INFOS: ReadonlyMap<string, TableInfo> = describeTables(schema.tables);

/** Rows per write batch: 1..MAX_BATCH. */
const MAX_BATCH = 50;
/**
 * Pause between a client's write batches, ms (uniform in the range). Every
 * write is pulled by every other client, so the clients' process merges
 * (clients - 1) rows per row written. A pace well below the sync loop's keeps
 * that merging from swamping the clients' process, whose event-loop lag (part
 * of every client-side latency) is reported beside the latencies.
 */
const WRITE_PAUSE_MS: readonly [number, number] = [300, 3_000];
/** Pause between a client's syncs, ms (uniform in the range). */
const SYNC_PAUSE_MS: readonly [number, number] = [20, 300];
/** Share of inserts and of updates among the writes; the rest are deletes. */
const INSERT_SHARE = 0.5;
const UPDATE_SHARE = 0.35;
/** The server's RSS counts as flat when it grew by at most this share or this many MB. */
const RSS_GROWTH_SHARE = 0.2;
const RSS_GROWTH_MB = 30;
/** Seconds the server is left idle after the checks before its idle RSS is read. */
const IDLE_SECONDS = 10;
/** Seconds of RSS samples whose median is "after the warm-up" and "at the end". */
const RSS_WINDOW_S = 5;
/** Drain rounds (every client syncs) before the harness gives up on an outbox emptying. */
const MAX_DRAIN_ROUNDS = 30;
/** Rows per page of the harness's own snapshot pull (the server's maximum). */
const SNAPSHOT_PAGE = 5_000;
/** Problems printed in full; the rest are counted. */
const SHOWN_PROBLEMS = 20;

const MB = 1024 * 1024;
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const ROOT = here("..");

// ---------------------------------------------------------------------------
// Options

/** What one run does. */
interface LoadOptions {
  readonly seconds: number;
  readonly clients: number;
  readonly warmup: number;
  readonly store: "memory" | "file" | "mixed";
  readonly seed: number;
  readonly runtime: "node" | "deno" | "bun" | "all" | undefined;
}

function parseOptions(argv: readonly string[]): LoadOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      seconds: { type: "string" },
      clients: { type: "string" },
      warmup: { type: "string" },
      store: { type: "string" },
      seed: { type: "string" },
      runtime: { type: "string" },
    },
  });
  const env = process.env;
  const positive = (name: string, value: string | undefined, fallback: number) => {
    const n = value === undefined ? fallback : Number(value);
    if (!(Number.isFinite(n) && n > 0)) throw new RangeError(`--${name} must be > 0, got ${value}`);
    return n;
  };
  const seconds = positive("seconds", values.seconds ?? env.LOAD_SECONDS, 60);
  const store = values.store ?? env.LOAD_STORE ?? "mixed";
  if (store !== "memory" && store !== "file" && store !== "mixed") {
    throw new RangeError(`--store must be memory, file or mixed, got ${store}`);
  }
  const runtime = values.runtime;
  if (runtime !== undefined && !["node", "deno", "bun", "all"].includes(runtime)) {
    throw new RangeError(`--runtime must be node, deno, bun or all, got ${runtime}`);
  }
  return {
    seconds,
    clients: Math.round(positive("clients", values.clients ?? env.LOAD_CLIENTS, 32)),
    // The warm-up never takes more than half the run.
    warmup: Math.min(positive("warmup", values.warmup ?? env.LOAD_WARMUP, 10), seconds / 2),
    store,
    seed: Math.round(
      positive("seed", values.seed ?? env.LOAD_SEED, 1 + Math.floor(Math.random() * 2 ** 31)),
    ),
    runtime: runtime as LoadOptions["runtime"],
  };
}

// ---------------------------------------------------------------------------
// Small tools

/** A seeded PRNG (mulberry32): the writes' choices follow `--seed`. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const between = (rng: () => number, [low, high]: readonly [number, number]) =>
  low + rng() * (high - low);
const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

/** `promise`, or what `late()` gives if it has not settled within `ms`; no timer outlives it. */
async function within<T, F>(promise: Promise<T>, ms: number, late: () => F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<F>((done, fail) => {
    timer = setTimeout(() => {
      try {
        done(late());
      } catch (error) {
        fail(error);
      }
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The nearest-rank percentile of unsorted values (NaN for none). */
function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

/**
 * The event-loop lag of this process (the clients'), sampled every 50 ms: a
 * client's request latency includes it, so it says how much of that latency
 * is the clients' own backlog.
 */
function lagMonitor(): { stop(): { p50: number; p99: number; max: number } } {
  const lags: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    lags.push(Math.max(0, now - last - 50));
    last = now;
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return { p50: percentile(lags, 50), p99: percentile(lags, 99), max: Math.max(0, ...lags) };
    },
  };
}

const ms1 = (value: number) => (Number.isNaN(value) ? "—" : `${value.toFixed(1)} ms`);
/** An error's message with its causes (undici's "fetch failed" says why only in its cause). */
function messageOf(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 4; depth++) {
    if (!(e instanceof Error)) {
      parts.push(String(e));
      break;
    }
    const code = (e as { code?: unknown }).code;
    parts.push(typeof code === "string" ? `${e.message} (${code})` : e.message);
    e = e.cause;
  }
  return parts.join(" ← ");
}

/** Requests of one kind: durations of the answered ones, statuses, throws. */
interface RequestStats {
  count: number;
  non2xx: number;
  thrown: number;
  readonly ms: number[];
  readonly statuses: Record<string, number>;
}

const newStats = (): RequestStats => ({ count: 0, non2xx: 0, thrown: 0, ms: [], statuses: {} });

/** Requests by path (`/push`, `/pull`). */
type RequestsByPath = Record<string, RequestStats>;

function statsFor(byPath: RequestsByPath, path: string): RequestStats {
  return byPath[path] ??= newStats();
}

// ---------------------------------------------------------------------------
// The server child

/** `server/main.ts` in a child process of this runtime. */
interface ServerChild {
  readonly url: string;
  readonly pid: number;
  /** Requests the server logged, by path. */
  readonly requests: RequestsByPath;
  /** What the server wrote to stderr other than request lines. */
  readonly stderr: string[];
  /** The process's RSS now, MB (undefined where /proc is not readable). */
  rssMb(): number | undefined;
  /** SIGTERM, then waits for the exit code (SIGKILL after 30 s). */
  stop(): Promise<number | null>;
}

// `2026-01-01T00:00:00.000Z POST /push 200 12.3ms`, as server/main.ts logs.
// Hono's logger, as server/main.ts prints it: whole ms, or whole s from 1 s on.
const LOG_LINE = /^\S+ (GET|POST) (\S+) (\d{3}) (\d+)(ms|s)$/;

async function startServer(dbPath: string): Promise<ServerChild> {
  const { command, args } = runtimeCommand(here("../server/main.ts"));
  const child = spawn(
    command,
    [...args, "--db", dbPath, "--port", "0", "--schema", here("./load.ts")],
    { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT },
  );
  const requests: RequestsByPath = {};
  const stderr: string[] = [];
  const head: string[] = [];
  let alive = true;
  const exited = new Promise<number | null>((done) =>
    child.once("exit", (code) => {
      alive = false;
      done(code);
    })
  );
  let onUrl: (url: string) => void = () => {};
  const url = new Promise<string>((done) => (onUrl = done));
  const record = (line: string, fromStderr: boolean) => {
    const match = LOG_LINE.exec(line);
    if (match !== null) {
      const stats = statsFor(requests, match[2]!);
      const status = match[3]!;
      stats.count += 1;
      stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
      if (!status.startsWith("2")) stats.non2xx += 1;
      stats.ms.push(Number(match[4]) * (match[5] === "s" ? 1000 : 1));
      return;
    }
    const found = /server on (http:\/\/\S+)/.exec(line);
    if (found !== null) onUrl(found[1]!);
    if (head.length < 50) head.push(line);
    if (fromStderr) stderr.push(line);
  };
  createInterface({ input: child.stdout! }).on("line", (line) => record(line, false));
  createInterface({ input: child.stderr! }).on("line", (line) => record(line, true));
  const ready = await within(
    Promise.race([
      url,
      exited.then((code): never => {
        throw new Error(`server/main.ts exited (code ${code}):\n${head.join("\n")}`);
      }),
    ]),
    60_000,
    (): never => {
      child.kill("SIGKILL");
      throw new Error(`server/main.ts printed no URL in 60 s:\n${head.join("\n")}`);
    },
  );
  const pid = child.pid!;
  return {
    url: ready,
    pid,
    requests,
    stderr,
    rssMb: () => readRssMb(pid),
    async stop() {
      // Only while it runs: its pid is not signalled once it may belong to another process.
      // process.kill, not child.kill: Deno's child_process then reports the real exit code.
      if (alive) process.kill(pid, "SIGTERM");
      const code = await within(exited, 30_000, () => "timeout" as const);
      if (code !== "timeout") return code;
      child.kill("SIGKILL");
      await exited;
      return null;
    },
  };
}

/** VmRSS of a process from /proc, MB. */
function readRssMb(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return kb === null ? undefined : Number(kb[1]) / 1024;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// Clients

/** A client's newest write of one row of the row-LWW table. */
interface RowWrite {
  version: string;
  deleted: boolean;
  /** The returned row's declared values, in wire form. */
  data: Record<string, unknown>;
}

/** A client's newest writes of one row of the column-LWW table, per column. */
interface ColumnWrite {
  version: string;
  /** Column → newest version written and its value (wire form). */
  columns: Record<string, { version: string; value: unknown }>;
  /** Version of the client's delete of the row. */
  deletedAt?: string;
}

/** What the clients did, added up. */
interface ClientTotals {
  writes: Record<string, number>;
  batches: number;
  writeErrors: number;
  syncs: number;
  syncErrors: number;
  pushedChanges: number;
  verdicts: Record<string, number>;
  pulledRows: number;
  readonly requests: RequestsByPath;
  readonly errorSamples: string[];
}

interface LoadClient {
  readonly name: string;
  readonly db: LoadDb;
  readonly manager: ServerSyncManager<LoadTables>;
  /** The writes' choices and pauses. */
  readonly rng: () => number;
  /** The sync loop's pauses: its own sequence, so the writes' follows the seed alone. */
  readonly pauses: () => number;
  readonly rows: Map<string, RowWrite>;
  readonly cols: Map<string, ColumnWrite>;
}

const keyOf = (table: string, id: string) => `${table}\u0000${id}`;

function noteError(totals: ClientTotals, what: string, error: unknown): void {
  if (totals.errorSamples.length < SHOWN_PROBLEMS) {
    totals.errorSamples.push(`${what}: ${messageOf(error)}`);
  }
}

/**
 * A fetch that reads the whole body before it resolves, so the time taken is
 * the request's full round trip, and counts every status and every throw.
 */
function countingFetch(totals: ClientTotals): typeof fetch {
  return async (input, init) => {
    const path = new URL(String(input instanceof Request ? input.url : input)).pathname;
    const stats = statsFor(totals.requests, path);
    const start = performance.now();
    try {
      const response = await fetch(input, init);
      const body = await response.arrayBuffer();
      stats.ms.push(performance.now() - start);
      stats.count += 1;
      stats.statuses[response.status] = (stats.statuses[response.status] ?? 0) + 1;
      if (!response.ok) {
        stats.non2xx += 1;
        noteError(
          totals,
          `POST ${path} ${response.status}`,
          new TextDecoder().decode(body).slice(0, 300),
        );
      }
      return new Response(body, { status: response.status, headers: response.headers });
    } catch (error) {
      stats.count += 1;
      stats.thrown += 1;
      noteError(totals, `POST ${path} threw`, error);
      throw error;
    }
  };
}

/** A view of `db` whose `applyServerChanges` counts the rows it receives. */
function countingDatabase(db: LoadDb, totals: ClientTotals): LoadDb {
  const apply: LoadDb["applyServerChanges"] = async (changes) => {
    const result = await db.applyServerChanges(changes);
    for (const n of Object.values(result.received)) totals.pulledRows += n;
    return result;
  };
  return new Proxy(db, {
    get(target, property) {
      if (property === "applyServerChanges") return apply;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function openLoadClient(
  index: number,
  url: string,
  options: LoadOptions,
  dir: string,
  totals: ClientTotals,
): Promise<LoadClient> {
  const onFile = options.store === "file" || (options.store === "mixed" && index % 2 === 0);
  const name = `load-${index}`;
  const db = await openDatabase({
    adapter: libsqlAdapter(
      createClient({ url: onFile ? `file:${join(dir, `${name}.db`)}` : ":memory:" }),
    ),
    schema,
    nodeId: name,
  });
  const http = createHttpSync({ url, fetch: countingFetch(totals) });
  const manager = new ServerSyncManager<LoadTables>({
    database: countingDatabase(db, totals),
    ...http,
    onSend: async (operations, database) => {
      totals.pushedChanges += operations.length;
      const results = await http.onSend(operations, database);
      for (const result of results) {
        totals.verdicts[result.status] = (totals.verdicts[result.status] ?? 0) + 1;
        if (result.status === "rejected") {
          noteError(
            totals,
            `rejected ${result.table} ${result.id}`,
            `${result.code}: ${result.message}`,
          );
        }
      }
      return results;
    },
    // Not started: the sync loop calls syncNow(); a failure is counted, not retried in the background.
    syncInterval: 3_600_000,
  });
  return {
    name,
    db,
    manager,
    rng: random(options.seed + index * 7919),
    pauses: random(options.seed + index * 7919 + 1),
    rows: new Map(),
    cols: new Map(),
  };
}

// ---------------------------------------------------------------------------
// Writes

const WORDS = ["alpha", "beta", "gamma", "δέλτα", "épsilon", "zêta", "η", "θ✓", "🙂", "x'y\"z"];

function pick<T>(rng: () => number, values: readonly T[]): T {
  return values[Math.floor(rng() * values.length)]!;
}

function someText(rng: () => number): string {
  const words = Array.from({ length: 1 + Math.floor(rng() * 6) }, () => pick(rng, WORDS));
  // Now and then a long value (about 1 KB).
  return rng() < 0.03 ? words.join(" ").repeat(40) : words.join(" ");
}

function someInteger(rng: () => number): number {
  const r = rng();
  if (r < 0.02) return Number.MAX_SAFE_INTEGER;
  if (r < 0.04) return -(2 ** 40);
  return Math.floor(rng() * 2_000) - 1_000;
}

function someBytes(rng: () => number): Uint8Array {
  const bytes = new Uint8Array(Math.floor(rng() * 200));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rng() * 256);
  return bytes;
}

function someMeta(rng: () => number): Record<string, unknown> {
  return {
    n: someInteger(rng),
    ok: rng() < 0.5,
    label: someText(rng),
    nested: { list: [1, 2.5, "three", null], at: Math.floor(rng() * 1e9) },
  };
}

/** Values of an `items` row: a few blobs and JSON values, some nulls. */
function itemValues(rng: () => number) {
  return {
    title: someText(rng),
    count: someInteger(rng),
    score: rng() < 0.2 ? null : rng() * 1_000 - 500, // full-precision doubles
    payload: rng() < 0.2 ? someBytes(rng) : null,
    meta: rng() < 0.3 ? someMeta(rng) : null,
  };
}

/** Values of a `notes` row. */
function noteValues(rng: () => number) {
  return {
    body: someText(rng),
    pinned: rng() < 0.5,
    rank: rng() < 0.3 ? null : someInteger(rng),
    tags: rng() < 0.3
      ? Array.from({ length: Math.floor(rng() * 4) }, () => pick(rng, WORDS))
      : null,
  };
}

/** A random subset (at least one) of a row's values: an update's patch. */
function patchOf(rng: () => number, values: Record<string, unknown>): Record<string, unknown> {
  const names = Object.keys(values);
  const patch: Record<string, unknown> = {};
  for (const name of names) if (rng() < 0.4) patch[name] = values[name];
  if (Object.keys(patch).length === 0) {
    const name = pick(rng, names);
    patch[name] = values[name];
  }
  return patch;
}

/**
 * A live row of `table`, picked at random by rowid (any client's: updates and
 * deletes meet other clients' concurrent writes), not one `excluded` names.
 */
async function randomLiveRow(
  tx: Transaction<LoadTables>,
  table: TableName,
  rng: () => number,
  excluded: ReadonlySet<string>,
): Promise<string | undefined> {
  const [top] = await tx.query(`SELECT max(rowid) AS n FROM "${table}"`);
  const max = Number(top?.n ?? 0);
  if (max === 0) return undefined;
  const from = 1 + Math.floor(rng() * max);
  for (
    const sql of [
      `SELECT system_id FROM "${table}" WHERE rowid >= ? AND is_deleted = 0 ORDER BY rowid LIMIT 8`,
      `SELECT system_id FROM "${table}" WHERE rowid < ? AND is_deleted = 0 ORDER BY rowid LIMIT 8`,
    ]
  ) {
    const rows = await tx.query(sql, [from]);
    const id = rows.map((r) => String(r.system_id)).find((id) => !excluded.has(id));
    if (id !== undefined) return id;
  }
  return undefined;
}

/** The declared values of a returned row, in wire form. */
function wireData(table: TableName, row: Record<string, unknown>): Record<string, unknown> {
  const info = INFOS.get(table)!;
  const data: Record<string, unknown> = {};
  for (const column of info.columns) data[column.name] = row[column.name] ?? null;
  return dataToWire(info, data);
}

/** One write made inside a batch, recorded once the batch commits. */
type Made =
  | { kind: "insert" | "update"; table: TableName; row: Record<string, unknown>; patched: string[] }
  | { kind: "delete"; table: TableName; row: Record<string, unknown> };

/** One transaction of 1..MAX_BATCH writes over both tables. */
async function writeBatch(client: LoadClient): Promise<Made[]> {
  const { rng } = client;
  // Mostly small batches, now and then a large one (a mean of about 17).
  const size = 1 + Math.floor(rng() ** 2 * MAX_BATCH);
  return await client.db.transaction(async (tx) => {
    const made: Made[] = [];
    const deleted = new Set<string>();
    for (let i = 0; i < size; i++) {
      const table = pick(rng, TABLES);
      const values: Record<string, unknown> = table === "items" ? itemValues(rng) : noteValues(rng);
      const r = rng();
      const target = r < INSERT_SHARE ? undefined : await randomLiveRow(tx, table, rng, deleted);
      if (target === undefined) {
        const row = await tx.insert(table, values as never) as Record<string, unknown>;
        made.push({ kind: "insert", table, row, patched: Object.keys(values) });
      } else if (r < INSERT_SHARE + UPDATE_SHARE) {
        const patch = patchOf(rng, values);
        const row = await tx.update(table, target, patch as never) as Record<string, unknown>;
        made.push({ kind: "update", table, row, patched: Object.keys(patch) });
      } else {
        await tx.delete(table, target);
        deleted.add(target);
        const row = await tx.get(table, target, { includeDeleted: true });
        made.push({ kind: "delete", table, row: row as Record<string, unknown> });
      }
    }
    return made;
  });
}

/** Keeps each row's newest write of this client (its versions only grow). */
function recordWrites(client: LoadClient, made: readonly Made[], totals: ClientTotals): void {
  for (const write of made) {
    const id = String(write.row.system_id);
    const version = String(write.row.system_version);
    const key = keyOf(write.table, id);
    const counter = `${write.table}.${write.kind}`;
    totals.writes[counter] = (totals.writes[counter] ?? 0) + 1;
    if (write.table === "items") {
      client.rows.set(key, {
        version,
        deleted: write.kind === "delete",
        data: wireData("items", write.row),
      });
      continue;
    }
    const entry = client.cols.get(key) ?? { version, columns: {} };
    entry.version = version;
    if (write.kind === "delete") {
      entry.deletedAt = version;
    } else {
      const data = wireData("notes", write.row);
      for (const name of write.patched) entry.columns[name] = { version, value: data[name] };
    }
    client.cols.set(key, entry);
  }
}

async function writerLoop(client: LoadClient, running: () => boolean, totals: ClientTotals) {
  while (running()) {
    try {
      const made = await writeBatch(client);
      recordWrites(client, made, totals);
      totals.batches += 1;
    } catch (error) {
      totals.writeErrors += 1;
      noteError(totals, `${client.name} write batch`, error);
    }
    await sleep(between(client.rng, WRITE_PAUSE_MS));
  }
}

async function syncOnce(client: LoadClient, totals: ClientTotals): Promise<boolean> {
  try {
    await client.manager.syncNow();
    totals.syncs += 1;
    return true;
  } catch (error) {
    totals.syncErrors += 1;
    noteError(totals, `${client.name} syncNow`, error);
    return false;
  }
}

async function syncLoop(client: LoadClient, running: () => boolean, totals: ClientTotals) {
  // Clients start at different moments, as real ones do.
  await sleep(between(client.pauses, SYNC_PAUSE_MS));
  while (running()) {
    await syncOnce(client, totals);
    await sleep(between(client.pauses, SYNC_PAUSE_MS));
  }
}

// ---------------------------------------------------------------------------
// Draining and verifying

/**
 * Every client syncs, round after round, until every outbox is empty; then
 * once more, so that each pulls what the others pushed in the last round.
 */
async function drain(
  clients: readonly LoadClient[],
  totals: ClientTotals,
): Promise<{ rounds: number; pending: number; ms: number }> {
  const start = performance.now();
  let pending = Infinity;
  let rounds = 0;
  while (rounds < MAX_DRAIN_ROUNDS) {
    rounds += 1;
    const ok = await Promise.all(clients.map((client) => syncOnce(client, totals)));
    const counts = await Promise.all(clients.map((client) => client.db.countDirtyRows()));
    const before = pending;
    pending = counts.reduce((a, b) => a + b, 0);
    if (before === 0 && pending === 0 && ok.every(Boolean)) break;
  }
  return { rounds, pending, ms: performance.now() - start };
}

/** A row in one comparable form: wire values, column versions, tombstone. */
interface Snapshot {
  version: string;
  createdAt: string;
  deleted: boolean;
  data: Record<string, unknown>;
  columnVersions: Record<string, string> | undefined;
}

/** Every row of the server, read through its own pull (no node id: nothing left out). */
async function snapshotServer(url: string): Promise<Map<string, Snapshot>> {
  const rows = new Map<string, Snapshot>();
  const cursors: Record<string, string | null> = Object.fromEntries(TABLES.map((t) => [t, null]));
  for (let page = 0;; page++) {
    if (page > 100_000) throw new Error("The server's pull never ended");
    const response = await fetch(`${url}/pull`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        protocol: PROTOCOL_VERSION,
        schema: schema.hash,
        cursors,
        limit: SNAPSHOT_PAGE,
      }),
    });
    if (!response.ok) throw new Error(`Snapshot pull answered ${response.status}`);
    const body = await response.json() as PullResponse;
    let more = false;
    for (const table of TABLES) {
      const changes = body.changes[table];
      if (changes === undefined) throw new Error(`The pull response has no page of ${table}`);
      for (const row of changes.rows) rows.set(keyOf(table, row.id), fromPull(table, row));
      cursors[table] = changes.cursor;
      more ||= changes.hasMore;
    }
    if (!more) return rows;
  }
}

function fromPull(table: TableName, row: PullRow): Snapshot {
  const info = INFOS.get(table)!;
  const data: Record<string, unknown> = {};
  for (const column of info.columns) data[column.name] = row.data[column.name] ?? null;
  return {
    version: row.version,
    createdAt: row.createdAt,
    deleted: row.deleted,
    data,
    columnVersions: row.columnVersions,
  };
}

/** Every row of a replica, tombstones included, in the same form. */
async function snapshotClient(db: LoadDb): Promise<Map<string, Snapshot>> {
  const rows = new Map<string, Snapshot>();
  for (const table of TABLES) {
    const info = INFOS.get(table)!;
    const versions = new Map<string, Record<string, string>>();
    if (info.perColumn) {
      for (const r of await db.query(`SELECT system_id, system_column_versions FROM "${table}"`)) {
        versions.set(String(r.system_id), JSON.parse(String(r.system_column_versions)));
      }
    }
    for (const row of await db.all(table, { includeDeleted: true })) {
      const r = row as unknown as Record<string, unknown>;
      const id = String(r.system_id);
      rows.set(keyOf(table, id), {
        version: String(r.system_version),
        createdAt: String(r.system_created_at),
        deleted: Number(r.is_deleted) === 1,
        data: wireData(table, r),
        columnVersions: info.perColumn ? versions.get(id) : undefined,
      });
    }
  }
  return rows;
}

/** The rows stored in the server's database file: id → version and tombstone. */
async function storedRows(dbPath: string): Promise<Map<string, string>> {
  const client = createClient({ url: `file:${dbPath}` });
  try {
    const rows = new Map<string, string>();
    for (const table of TABLES) {
      const result = await client.execute(
        `SELECT system_id, system_version, is_deleted FROM "${table}"`,
      );
      for (const r of result.rows) {
        rows.set(keyOf(table, String(r.system_id)), `${r.system_version} ${r.is_deleted}`);
      }
    }
    return rows;
  } finally {
    client.close();
  }
}

const showKey = (key: string) => key.replace("\u0000", " ");
const show = (value: unknown) => JSON.stringify(value);

/** Every client's newest writes, against the server's rows. */
function checkWrites(clients: readonly LoadClient[], server: Map<string, Snapshot>): string[] {
  const problems: string[] = [];
  for (const client of clients) {
    for (const [key, write] of client.rows) {
      const row = server.get(key);
      if (row === undefined) {
        problems.push(
          `${client.name} wrote ${showKey(key)} at ${write.version}: not on the server`,
        );
      } else if (row.version < write.version) {
        problems.push(
          `${client.name} wrote ${showKey(key)} at ${write.version}: the server has ${row.version}`,
        );
      } else if (
        row.version === write.version &&
        (row.deleted !== write.deleted || !isDeepStrictEqual(row.data, write.data))
      ) {
        problems.push(
          `${client.name} wrote ${showKey(key)} at ${write.version} (deleted ${write.deleted}, ` +
            `${
              show(write.data)
            }): the server has it at that version with deleted ${row.deleted}, ` +
            show(row.data),
        );
      }
    }
    for (const [key, write] of client.cols) {
      problems.push(...checkColumnWrite(client, key, write, server));
    }
  }
  return problems;
}

function checkColumnWrite(
  client: LoadClient,
  key: string,
  write: ColumnWrite,
  server: Map<string, Snapshot>,
): string[] {
  const at = `${client.name} wrote ${showKey(key)}`;
  const row = server.get(key);
  if (row === undefined) return [`${at} at ${write.version}: not on the server`];
  const problems: string[] = [];
  if (row.version < write.version) {
    problems.push(`${at} at ${write.version}: the server's row is at ${row.version}`);
  }
  const versions = row.columnVersions;
  if (versions === undefined) return [...problems, `${at}: the server sends no column versions`];
  for (const [name, column] of Object.entries(write.columns)) {
    const held = versions[name];
    if (held === undefined || held < column.version) {
      problems.push(`${at}: column ${name} at ${column.version}, the server's is at ${held}`);
    } else if (held === column.version && !isDeepStrictEqual(row.data[name], column.value)) {
      problems.push(
        `${at}: column ${name} = ${show(column.value)} at ${column.version}, ` +
          `the server has ${show(row.data[name])} at that version`,
      );
    }
  }
  if (write.deletedAt !== undefined) {
    const held = versions.is_deleted;
    if (held === undefined || held < write.deletedAt) {
      problems.push(`${at}: deleted at ${write.deletedAt}, the server's is_deleted is at ${held}`);
    } else if (held === write.deletedAt && !row.deleted) {
      problems.push(`${at}: deleted at ${write.deletedAt}, the server's row is not deleted`);
    }
  }
  return problems;
}

/** Differences between one replica and the server. */
function compareReplica(
  name: string,
  replica: Map<string, Snapshot>,
  server: Map<string, Snapshot>,
): string[] {
  const problems: string[] = [];
  for (const [key, row] of server) {
    const mine = replica.get(key);
    if (mine === undefined) problems.push(`${name} lacks ${showKey(key)} (server ${row.version})`);
    else if (!isDeepStrictEqual(mine, row)) {
      problems.push(
        `${name} differs on ${showKey(key)}: replica ${show(mine)}, server ${show(row)}`,
      );
    }
  }
  for (const key of replica.keys()) {
    if (!server.has(key)) problems.push(`${name} has ${showKey(key)}, which the server does not`);
  }
  return problems;
}

/** The server's pull against its stored rows. */
function compareStored(server: Map<string, Snapshot>, stored: Map<string, string>): string[] {
  const problems: string[] = [];
  for (const [key, value] of stored) {
    const row = server.get(key);
    if (row === undefined) problems.push(`the server stores ${showKey(key)} but never pulls it`);
    else if (`${row.version} ${row.deleted ? 1 : 0}` !== value) {
      problems.push(`the server stores ${showKey(key)} as ${value}, pulls ${row.version}`);
    }
  }
  for (const key of server.keys()) {
    if (!stored.has(key)) problems.push(`the server pulls ${showKey(key)}, not stored`);
  }
  return problems;
}

// ---------------------------------------------------------------------------
// One run

/** One check of the run. */
interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** Latency and count of one request type. */
interface RequestSummary {
  readonly count: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly serverP50Ms: number;
  readonly serverP99Ms: number;
  readonly non2xx: number;
  readonly thrown: number;
}

/** The JSON line of one run. */
export interface LoadReport {
  readonly ok: boolean;
  readonly runtime: string;
  readonly seed: number;
  readonly clients: number;
  readonly store: string;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly serverRequests: number;
  readonly requests: Record<string, RequestSummary>;
  readonly writes: Record<string, number>;
  readonly writesPerSecond: number;
  readonly pushedChanges: number;
  readonly verdicts: Record<string, number>;
  readonly pulledRows: number;
  /** The sum of the counts of the errors check (one failed request shows in several). */
  readonly errors: number;
  readonly rss: {
    readonly warmMb: number | null;
    readonly endMb: number | null;
    readonly peakMb: number | null;
    readonly held: boolean | null;
    /** The server's RSS at 10 s, 20 s, … */
    readonly everyTenSecondsMb: readonly number[];
    /** The server's RSS after the drain and the checks, idle. */
    readonly idleAfterMb: number | null;
    readonly clientProcessMb: number;
  };
  /** Event-loop lag of the clients' process during the load, ms. */
  readonly clientLagMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly drain: { readonly rounds: number; readonly pending: number; readonly ms: number };
  readonly rows: { readonly server: number; readonly verifiedWrites: number };
  readonly checks: readonly Check[];
}

function summarize(
  client: RequestStats | undefined,
  server: RequestStats | undefined,
  seconds: number,
): RequestSummary {
  const c = client ?? newStats();
  const s = server ?? newStats();
  return {
    count: c.count,
    perSecond: c.count / seconds,
    p50Ms: percentile(c.ms, 50),
    p99Ms: percentile(c.ms, 99),
    serverP50Ms: percentile(s.ms, 50),
    serverP99Ms: percentile(s.ms, 99),
    non2xx: c.non2xx,
    thrown: c.thrown,
  };
}

/** A copy of request counts: the load phase's, before the drain adds to them. */
function copyRequests(byPath: RequestsByPath): RequestsByPath {
  const copy: RequestsByPath = {};
  for (const [path, s] of Object.entries(byPath)) {
    copy[path] = { ...s, ms: [...s.ms], statuses: { ...s.statuses } };
  }
  return copy;
}

const sumOf = (byPath: RequestsByPath, field: "count" | "non2xx" | "thrown") =>
  Object.values(byPath).reduce((n, s) => n + s[field], 0);

async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const runtime = runtimeInfo();
  const dir = tempDir("declarative-sync-load-");
  const dbPath = join(dir.path, "server.db");
  progress(
    `load on ${runtime.label}: ${options.clients} clients (${options.store}), ` +
      `${options.seconds} s, warm-up ${options.warmup} s, seed ${options.seed}`,
  );
  const server = await startServer(dbPath);
  const totals: ClientTotals = {
    writes: {},
    batches: 0,
    writeErrors: 0,
    syncs: 0,
    syncErrors: 0,
    pushedChanges: 0,
    verdicts: {},
    pulledRows: 0,
    requests: {},
    errorSamples: [],
  };
  try {
    const clients = await Promise.all(
      Array.from(
        { length: options.clients },
        (_, i) => openLoadClient(i, server.url, options, dir.path, totals),
      ),
    );
    progress(`  server ${server.url} (pid ${server.pid}); load running …`);

    // RSS every second; the warm-up sample is the first one after the warm-up.
    const rss: { t: number; mb: number }[] = [];
    const start = performance.now();
    let reported = 0;
    const sampler = setInterval(() => {
      const mb = server.rssMb();
      const t = (performance.now() - start) / 1000;
      if (mb !== undefined) rss.push({ t, mb });
      // Every 10 s of elapsed time (a lagging event loop fires fewer intervals).
      if (Math.floor(t / 10) > reported) {
        reported = Math.floor(t / 10);
        progress(
          `  ${t.toFixed(0)} s: server RSS ${mb === undefined ? "?" : formatMb(mb)}, ` +
            `${sumOf(totals.requests, "count")} requests, ${totals.batches} write batches`,
        );
      }
    }, 1_000);
    const lag = lagMonitor();
    const until = start + options.seconds * 1000;
    const running = () => performance.now() < until;
    await Promise.all(
      clients.flatMap((client) => [
        writerLoop(client, running, totals),
        syncLoop(client, running, totals),
      ]),
    );
    const loadSeconds = (performance.now() - start) / 1000;
    clearInterval(sampler);
    const lagMs = lag.stop();
    // Medians of 5 s windows, so that one sample at a garbage collection's peak
    // or trough does not decide the comparison.
    const window = (from: number, to: number) => {
      const mbs = rss.filter((s) => s.t >= from && s.t < to).map((s) => s.mb);
      return mbs.length === 0 ? undefined : percentile(mbs, 50);
    };
    const warmMb = window(options.warmup, options.warmup + RSS_WINDOW_S);
    const endMb = window(loadSeconds - RSS_WINDOW_S, Infinity);
    const peakMb = rss.length === 0 ? undefined : Math.max(...rss.map((s) => s.mb));
    const trajectory = rss.filter((s, i) =>
      Math.floor(s.t / 10) > Math.floor((rss[i - 1]?.t ?? 0) / 10)
    )
      .map((s) => Math.round(s.mb));
    await sleep(300); // the server's last log lines
    const loadRequests = copyRequests(totals.requests);
    const loadServerRequests = copyRequests(server.requests);
    const loadWrites = Object.values(totals.writes).reduce((a, b) => a + b, 0);

    progress(`  load stopped after ${loadSeconds.toFixed(1)} s; draining …`);
    const drained = await drain(clients, totals);
    progress(
      `  drained in ${drained.rounds} rounds (${(drained.ms / 1000).toFixed(1)} s); verifying …`,
    );

    const serverRows = await snapshotServer(server.url);
    const rejected = (await Promise.all(clients.map((c) => c.db.getRejectedRows()))).flat();
    const writeProblems = checkWrites(clients, serverRows);
    const replicaProblems: string[] = [];
    for (const client of clients) {
      replicaProblems.push(
        ...compareReplica(client.name, await snapshotClient(client.db), serverRows),
      );
    }
    for (const client of clients) await client.db.close();
    // Idle again: what a runtime hands back once the load is over tells a
    // leak from a heap that was merely sized up under load. The lowest of
    // IDLE_SECONDS samples: a runtime collects an idle heap in its own time.
    let idleMb: number | undefined;
    for (let i = 0; i < IDLE_SECONDS; i++) {
      await sleep(1_000);
      const mb = server.rssMb();
      if (mb !== undefined) idleMb = Math.min(mb, idleMb ?? mb);
    }
    const exitCode = await server.stop();
    const storedProblems = compareStored(serverRows, await storedRows(dbPath));

    const errors = sumOf(totals.requests, "non2xx") + sumOf(totals.requests, "thrown") +
      sumOf(server.requests, "non2xx") + totals.syncErrors + totals.writeErrors +
      rejected.length + server.stderr.length;
    // Flat: the end of the load within the allowance of the warm-up, or, for a
    // heap sized up under load (Deno's grows for about two minutes), handed
    // back once idle: a leak keeps its memory.
    const allowedMb = warmMb === undefined ? 0 : Math.max(RSS_GROWTH_MB, warmMb * RSS_GROWTH_SHARE);
    const within = (mb: number | undefined) =>
      mb !== undefined && warmMb !== undefined && mb - warmMb <= allowedMb;
    const held = warmMb === undefined || endMb === undefined
      ? undefined
      : within(endMb) || within(idleMb);
    const verifiedWrites = clients.reduce((n, c) => n + c.rows.size + c.cols.size, 0);
    const checks: Check[] = [
      {
        name: "errors",
        ok: errors === 0,
        detail:
          `${sumOf(totals.requests, "non2xx")} non-2xx and ${sumOf(totals.requests, "thrown")} ` +
          `thrown requests at the clients, ${sumOf(server.requests, "non2xx")} non-2xx logged by ` +
          `the server, ${totals.syncErrors} failed syncs, ${totals.writeErrors} failed write ` +
          `batches, ${rejected.length} rejected changes, ${server.stderr.length} other server ` +
          `stderr lines`,
      },
      {
        name: "server RSS flat",
        ok: held !== false,
        detail: held === undefined
          ? "not measured (no /proc/<pid>/status)"
          : `median ${formatMb(warmMb!)} over ${options.warmup}–${
            options.warmup + RSS_WINDOW_S
          } s, ${formatMb(endMb!)} over the last ${RSS_WINDOW_S} s (${
            endMb! >= warmMb! ? "+" : ""
          }${formatMb(endMb! - warmMb!)}; allowed +${
            formatMb(Math.max(RSS_GROWTH_MB, warmMb! * RSS_GROWTH_SHARE))
          }), peak ${formatMb(peakMb!)}; every 10 s: ${trajectory.join(", ")} MB; idle after ` +
            `the checks ${
              idleMb === undefined ? "?" : formatMb(idleMb)
            } (lowest of ${IDLE_SECONDS} s)`,
      },
      {
        name: "outboxes drained",
        ok: drained.pending === 0,
        detail: `${drained.pending} changes left after ${drained.rounds} rounds of syncNow() ` +
          `(${(drained.ms / 1000).toFixed(1)} s)`,
      },
      {
        name: "no acknowledged write missing",
        ok: writeProblems.length === 0,
        detail: `${formatNumber(loadWrites)} writes; each client's newest write of each row ` +
          `it wrote (${formatNumber(verifiedWrites)}) checked: ${writeProblems.length} problems`,
      },
      {
        name: "replicas equal the server",
        ok: replicaProblems.length === 0,
        detail: `${clients.length} replicas × ${formatNumber(serverRows.size)} rows, ` +
          `${replicaProblems.length} differences`,
      },
      {
        name: "pull equals stored rows",
        ok: storedProblems.length === 0,
        detail: `${storedProblems.length} differences between the server's pull and its file`,
      },
      {
        name: "server stopped cleanly",
        ok: exitCode === 0,
        detail: `exit code ${exitCode} on SIGTERM`,
      },
    ];

    const problems = [
      ...totals.errorSamples,
      ...rejected.slice(0, SHOWN_PROBLEMS).map((r) =>
        `rejected ${r.table} ${r.id}: ${r.code}: ${r.message}`
      ),
      ...server.stderr.slice(0, SHOWN_PROBLEMS).map((line) => `server stderr: ${line}`),
      ...writeProblems,
      ...replicaProblems,
      ...storedProblems,
    ];
    for (const line of problems.slice(0, SHOWN_PROBLEMS * 3)) progress(`  ✗ ${line}`);
    if (problems.length > SHOWN_PROBLEMS * 3) {
      progress(`  … and ${problems.length - SHOWN_PROBLEMS * 3} more`);
    }

    const paths = [...new Set([...Object.keys(loadRequests), ...Object.keys(loadServerRequests)])];
    return {
      ok: checks.every((c) => c.ok),
      runtime: runtime.label,
      seed: options.seed,
      clients: options.clients,
      store: options.store,
      seconds: loadSeconds,
      requestsPerSecond: sumOf(loadRequests, "count") / loadSeconds,
      serverRequests: sumOf(loadServerRequests, "count"),
      requests: Object.fromEntries(
        paths.sort().map((
          p,
        ) => [p, summarize(loadRequests[p], loadServerRequests[p], loadSeconds)]),
      ),
      writes: totals.writes,
      writesPerSecond: loadWrites / loadSeconds,
      pushedChanges: totals.pushedChanges,
      verdicts: totals.verdicts,
      pulledRows: totals.pulledRows,
      errors,
      rss: {
        warmMb: warmMb ?? null,
        endMb: endMb ?? null,
        peakMb: peakMb ?? null,
        held: held ?? null,
        everyTenSecondsMb: trajectory,
        idleAfterMb: idleMb ?? null,
        clientProcessMb: process.memoryUsage().rss / MB,
      },
      clientLagMs: lagMs,
      drain: drained,
      rows: { server: serverRows.size, verifiedWrites },
      checks,
    };
  } finally {
    await server.stop(); // a no-op once stopped
    dir.cleanup();
  }
}

function printReport(report: LoadReport): void {
  const rows: string[][] = [];
  for (const [path, r] of Object.entries(report.requests)) {
    rows.push([
      `POST ${path}`,
      `${formatNumber(r.count)} (${formatNumber(r.perSecond, 1)}/s)`,
      `${ms1(r.p50Ms)} / ${ms1(r.p99Ms)}`,
      `${ms1(r.serverP50Ms)} / ${ms1(r.serverP99Ms)}`,
      `${r.non2xx} non-2xx, ${r.thrown} thrown`,
    ]);
  }
  console.log(`\n#### Load — ${report.runtime}\n`);
  console.log(
    `${report.clients} clients (${report.store}), ${report.seconds.toFixed(1)} s, seed ` +
      `${report.seed}: ${formatNumber(report.requestsPerSecond, 1)} requests/s ` +
      `(${formatNumber(report.serverRequests)} logged by the server), ` +
      `${formatNumber(report.writesPerSecond, 1)} writes/s, ${
        formatNumber(report.pushedChanges)
      } ` +
      `changes pushed (${
        Object.entries(report.verdicts).map(([k, v]) => `${k} ${v}`).join(", ")
      }), ` +
      `${formatNumber(report.pulledRows)} rows pulled; client process RSS ` +
      `${formatMb(report.rss.clientProcessMb)}, its event-loop lag p50 ` +
      `${ms1(report.clientLagMs.p50)}, p99 ${ms1(report.clientLagMs.p99)}.\n`,
  );
  console.log(
    markdownTable(
      ["Request", "Count", "p50 / p99 (client)", "p50 / p99 (server)", "Errors"],
      rows,
    ),
  );
  console.log("");
  console.log(
    markdownTable(
      ["Check", "Held", "Detail"],
      report.checks.map((c) => [c.name, c.ok ? "yes" : "**no**", c.detail]),
    ),
  );
  console.log("");
}

// ---------------------------------------------------------------------------
// Other runtimes as child processes

function commandFor(name: "node" | "deno" | "bun"): { command: string; args: string[] } {
  const script = here("./load.ts");
  const current = runtimeInfo().name;
  if (name === current) return runtimeCommand(script);
  if (name === "node") return { command: "node", args: ["--import", "tsx", script] };
  const bin = join(ROOT, "node_modules", ".bin", name);
  if (!existsSync(bin)) throw new Error(`${bin} is missing (npm install brings it)`);
  return name === "deno"
    ? { command: bin, args: ["run", "-A", script] }
    : { command: bin, args: [script] };
}

/** Runs this file on `name` with `argv`, passing its output through; returns its JSON line. */
function runChild(name: "node" | "deno" | "bun", argv: readonly string[]): Promise<LoadReport> {
  const { command, args } = commandFor(name);
  const child = spawn(command, [...args, ...argv], {
    stdio: ["ignore", "pipe", "inherit"],
    cwd: ROOT,
  });
  let last = "";
  createInterface({ input: child.stdout! }).on("line", (line) => {
    if (line.startsWith("{")) last = line;
    else console.log(line);
  });
  return new Promise((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => {
      try {
        done(JSON.parse(last) as LoadReport);
      } catch {
        fail(new Error(`bench/load.ts on ${name} exited ${code} without a report`));
      }
    });
  });
}

/** The arguments without `--runtime X`, for the children. */
function withoutRuntime(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--runtime") i++;
    else if (!argv[i]!.startsWith("--runtime=")) out.push(argv[i]!);
  }
  return out;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const options = parseOptions(argv);
  const current = runtimeInfo().name;
  if (options.runtime === undefined || options.runtime === current) {
    // The run stops by itself: a watchdog beyond the load, the drain and the checks.
    const watchdog = setTimeout(() => {
      progress(`load did not finish within ${options.seconds + 600} s`);
      process.exit(2);
    }, (options.seconds + 600) * 1000);
    const report = await runLoad(options);
    clearTimeout(watchdog);
    printReport(report);
    console.log(JSON.stringify(report));
    return report.ok ? 0 : 1;
  }
  const names = options.runtime === "all" ? (["node", "deno", "bun"] as const) : [options.runtime];
  const runs: LoadReport[] = [];
  const childArgs = [...withoutRuntime(argv), "--seed", String(options.seed)];
  for (const name of names) {
    try {
      runs.push(await runChild(name, childArgs));
    } catch (error) {
      progress(messageOf(error));
      runs.push({ ok: false, runtime: name } as LoadReport);
    }
  }
  console.log(
    markdownTable(
      ["Runtime", "Requests/s", "Errors", "Server RSS warm → end", "Checks"],
      runs.map((r) => [
        r.runtime,
        r.requestsPerSecond === undefined ? "—" : formatNumber(r.requestsPerSecond, 1),
        String(r.errors ?? "—"),
        r.rss === undefined
          ? "—"
          : `${formatMb(r.rss.warmMb ?? NaN)} → ${formatMb(r.rss.endMb ?? NaN)}`,
        r.ok ? "all held" : "**failed**",
      ]),
    ),
  );
  const ok = runs.every((r) => r.ok);
  console.log(JSON.stringify({ ok, runs }));
  return ok ? 0 : 1;
}

// Only as the entry point: server/main.ts imports this file for its schema.
if (resolve(process.argv[1] ?? "") === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
