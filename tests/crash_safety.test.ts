/**
 * Crash safety with real processes: SIGKILL at random moments, then a look at
 * what survived.
 *
 * 1. A writer (tests/crash_writer.ts, a child of the same runtime) killed
 *    mid-write: every committed synced row keeps its outbox entry at its
 *    latest version and no entry outlives its row, the persisted clock is
 *    ahead of every stored version, the file passes `PRAGMA integrity_check`,
 *    every write the writer reported is there, every announced atomic write is
 *    there completely or not at all, and a reopened database stamps versions
 *    newer than everything stored (even with its wall clock at 0).
 * 2. Two `server/main.ts` processes on one `file:` database, one of them
 *    killed mid-push again and again while three clients write and sync: no
 *    write a client saw acknowledged is missing from the server, and once
 *    everything restarted and synced until quiet, server and clients hold the
 *    same rows, equal to a last-write-wins oracle of every write made.
 * 3. A client on a `file:` database (the writer in sync mode) killed mid-sync
 *    and restarted on its file while another client writes too: after each
 *    kill its file is sound and what it had acknowledged is on the server; a
 *    final clean run syncs until quiet and server, both clients and the oracle
 *    agree.
 * 4. Two `server/main.ts` processes started at the same moment on a new file
 *    (the first open of a shared database, which scenario 2 does one after
 *    the other): both come up.
 *
 * Kill times come from a seeded generator; a failure names the seed and the
 * kill schedule. The default run makes 4 kills per scenario:
 *
 * ```sh
 * CRASH_KILLS=40 CRASH_SEED=7 node --import tsx --test tests/crash_safety.test.ts
 * CRASH_KILLS=40 node_modules/.bin/deno test -A tests/crash_safety.test.ts
 * CRASH_KILLS=40 node_modules/.bin/bun test --timeout 600000 ./tests/crash_safety.test.ts
 * ```
 *
 * Each scenario prints how many kills it made and how many rows it checked.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import { type Database, openDatabase } from "../src/database.ts";
import { createHttpSync } from "../src/http_sync.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import type { PullRow } from "../src/protocol.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import { toBase64 } from "../src/wire.ts";
import {
  DEFAULT_WATCH_INTERVAL_MS,
  openServerDatabase,
  type ServerDatabase,
} from "../server/database.ts";
import {
  COLUMN_TABLES,
  COLUMNS,
  type CommittedWrite,
  createWorkload,
  freshId,
  seededRandom,
  SYNCED_TABLES,
  type SyncedTable,
  type Tables,
} from "./crash_writer.ts";
import { schema } from "./fixtures.ts";
import { tempDir } from "./helpers.ts";
import { openClient, startServer, type TestClient } from "./sync_helpers.ts";

const KILLS = envInteger("CRASH_KILLS", 4, 1);
const SEED = envInteger("CRASH_SEED", 20_251_202, 0);
const writerScript = fileURLToPath(new URL("./crash_writer.ts", import.meta.url));
const serverScript = fileURLToPath(new URL("../server/main.ts", import.meta.url));
const schemaModule = fileURLToPath(new URL("./fixtures.ts", import.meta.url));
const STARTUP_MS = 60_000;

function envInteger(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be an integer of at least ${min}, got ${raw}`);
  }
  return value;
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

// ---------------------------------------------------------------------------
// Child processes of the same runtime, never left behind.

function runtimeArgs(file: string): [string, string[]] {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (g.Deno !== undefined) return [process.execPath, ["run", "-A", file]];
  if (g.Bun !== undefined) return [process.execPath, [file]];
  return [process.execPath, ["--import", "tsx", file]];
}

/** A running child process whose stdout is read line by line. */
interface Child {
  readonly name: string;
  /** Every stdout line so far (when kept). */
  readonly lines: string[];
  /** True until the process has exited. */
  alive(): boolean;
  /** The last lines of stdout and stderr, for failure messages. */
  output(): string;
  /** Resolves with the first line (from now on, or kept) matching `pattern`. */
  waitFor(pattern: RegExp, ms?: number): Promise<RegExpExecArray>;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void>;
}

const children = new Set<Child>();

async function killChildren(): Promise<void> {
  for (const child of [...children]) await child.kill();
}

function spawnChild(name: string, script: string, args: string[], keepLines: boolean): Child {
  const [command, runtime] = runtimeArgs(script);
  // stdin stays open: the writer exits when it closes (this process is gone).
  const proc: ChildProcess = spawn(command, [...runtime, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" },
  });
  const lines: string[] = [];
  let tail = "";
  let partial = "";
  let exited = false;
  const waiters = new Set<(line: string) => void>();
  const remember = (text: string) => {
    tail = (tail + text).slice(-6_000);
  };
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (chunk: string) => {
    remember(chunk);
    const parts = (partial + chunk).split("\n");
    partial = parts.pop()!;
    for (const line of parts) {
      if (keepLines) lines.push(line);
      for (const waiter of [...waiters]) waiter(line);
    }
  });
  proc.stderr!.setEncoding("utf8");
  proc.stderr!.on("data", (chunk: string) => remember(chunk));
  proc.stdin!.on("error", () => undefined);
  const exit = new Promise<void>((done) => {
    const end = () => {
      exited = true;
      done();
    };
    proc.on("exit", end);
    proc.on("error", (error) => {
      remember(`spawn failed: ${error}`);
      end();
    });
  });
  const child: Child = {
    name,
    lines,
    alive: () => !exited,
    output: () => `--- ${name} (pid ${proc.pid}) output:\n${tail}`,
    waitFor(pattern, ms = STARTUP_MS) {
      for (const line of lines) {
        const match = pattern.exec(line);
        if (match) return Promise.resolve(match);
      }
      return new Promise((resolve, reject) => {
        const stop = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        const timer = setTimeout(() => {
          stop();
          reject(new Error(`${name}: no line matching ${pattern} in ${ms} ms\n${child.output()}`));
        }, ms);
        const check = (line: string) => {
          const match = pattern.exec(line);
          if (match) {
            stop();
            resolve(match);
          }
        };
        waiters.add(check);
        exit.then(() => {
          if (!waiters.has(check)) return;
          stop();
          reject(new Error(`${name} exited before a line matching ${pattern}\n${child.output()}`));
        });
      });
    },
    async kill() {
      if (!exited) {
        try {
          process.kill(proc.pid!, "SIGKILL");
        } catch {
          // gone already
        }
      }
      await exit;
      children.delete(child);
    },
  };
  children.add(child);
  return child;
}

/** Adds the seed and the kill schedule to a failure, so it can be replayed. */
function withReplay(scenario: string, schedule: () => unknown, error: unknown): Error {
  const replay = `${scenario}: replay with CRASH_SEED=${SEED} CRASH_KILLS=${KILLS}; ` +
    `kill schedule ${JSON.stringify(schedule())}`;
  console.error(replay);
  if (error instanceof Error) {
    error.message = `${error.message}\n${replay}`;
    return error;
  }
  return new Error(`${String(error)}\n${replay}`);
}

function failOn(problems: readonly string[], what: string): void {
  if (problems.length === 0) return;
  assert.fail(
    `${what}: ${problems.length} problem(s)\n  ${problems.slice(0, 25).join("\n  ")}` +
      (problems.length > 25 ? `\n  … and ${problems.length - 25} more` : ""),
  );
}

// ---------------------------------------------------------------------------
// Rows in one comparable shape, and the last-write-wins oracle.

/** A row as compared: version, tombstone flag and declared columns (bytes as base64). */
interface Canonical {
  readonly version: string;
  readonly deleted: boolean;
  readonly data: Record<string, unknown>;
}
type TableRows = Map<string, Canonical>;
type State = Record<SyncedTable, TableRows>;

const emptyState = (): State => ({ tasks: new Map(), notes: new Map(), files: new Map() });

function canonicalValue(value: unknown): unknown {
  return value instanceof Uint8Array ? `base64:${toBase64(value)}` : value ?? null;
}

function canonicalData(table: SyncedTable, data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of COLUMNS[table]) {
    const value = data[name];
    out[name] = table === "files" && name === "bytes" && typeof value === "string"
      ? `base64:${value}`
      : canonicalValue(value);
  }
  return out;
}

/** Every row of a local database, tombstones included. */
async function clientState(db: Database<Tables>): Promise<State> {
  const state = emptyState();
  for (const table of SYNCED_TABLES) {
    for (const row of await db.all(table, { includeDeleted: true })) {
      const record = row as unknown as Record<string, unknown>;
      state[table].set(String(record.system_id), {
        version: String(record.system_version),
        deleted: Number(record.is_deleted) === 1,
        data: canonicalData(table, record),
      });
    }
  }
  return state;
}

/** Every row of the server database, with per-column versions, paged through `pull`. */
async function serverRows(database: ServerDatabase): Promise<Record<SyncedTable, PullRow[]>> {
  const rows: Record<SyncedTable, PullRow[]> = { tasks: [], notes: [], files: [] };
  for (const table of SYNCED_TABLES) {
    let cursor: string | null = null;
    for (;;) {
      const page: Record<
        string,
        { rows: readonly PullRow[]; cursor: string | null; hasMore: boolean }
      > = await database.pull({ [table]: cursor }, 5_000);
      const changes = page[table]!;
      rows[table].push(...changes.rows);
      cursor = changes.cursor;
      if (!changes.hasMore) break;
    }
  }
  return rows;
}

function stateOfServer(rows: Record<SyncedTable, PullRow[]>): State {
  const state = emptyState();
  for (const table of SYNCED_TABLES) {
    for (const row of rows[table]) {
      state[table].set(row.id, {
        version: row.version,
        deleted: row.deleted,
        data: canonicalData(table, row.data),
      });
    }
  }
  return state;
}

/**
 * Last-write-wins over every write made: per row (row tables) or per column
 * and tombstone flag (column tables), the greatest version wins.
 */
function createOracle() {
  const rows = new Map<string, Canonical & { table: SyncedTable; id: string }>();
  const columns = new Map<string, Map<string, { version: string; value: unknown }>>();
  let writes = 0;
  const key = (table: string, id: string) => `${table}\u0000${id}`;

  function addColumn(
    table: SyncedTable,
    id: string,
    column: string,
    version: string,
    value: unknown,
  ) {
    const k = key(table, id);
    let cells = columns.get(k);
    if (cells === undefined) columns.set(k, cells = new Map());
    const known = cells.get(column);
    if (known === undefined || version > known.version) {
      cells.set(column, { version, value: canonicalValue(value) });
    }
  }

  return {
    /** A committed write, as the workload reports it. */
    add(write: CommittedWrite): void {
      writes++;
      if (!COLUMN_TABLES.has(write.table)) {
        const k = key(write.table, write.id);
        const known = rows.get(k);
        if (known === undefined || write.version > known.version) {
          rows.set(k, {
            table: write.table,
            id: write.id,
            version: write.version,
            deleted: write.deleted,
            data: canonicalData(write.table, write.data),
          });
        }
        return;
      }
      for (const column of write.columns) {
        const value = column === "is_deleted" ? write.deleted : write.data[column];
        addColumn(write.table, write.id, column, write.version, value);
      }
    },
    /** One column of a column-table row, as a replica's file holds it. */
    addColumn(table: SyncedTable, id: string, column: string, version: string, value: unknown) {
      writes++;
      addColumn(table, id, column, version, value);
    },
    get writes(): number {
      return writes;
    },
    expected(): State {
      const state = emptyState();
      for (const row of rows.values()) {
        state[row.table].set(row.id, {
          version: row.version,
          deleted: row.deleted,
          data: row.data,
        });
      }
      for (const [k, cells] of columns) {
        const [table, id] = k.split("\u0000") as [SyncedTable, string];
        let version = "";
        const data: Record<string, unknown> = {};
        for (const [column, cell] of cells) {
          if (cell.version > version) version = cell.version;
          if (column !== "is_deleted") data[column] = cell.value;
        }
        const ordered: Record<string, unknown> = {};
        for (const name of COLUMNS[table]) {
          ordered[name] = name in data ? data[name] : `<never written>`;
        }
        state[table].set(id, {
          version,
          deleted: cells.get("is_deleted")?.value === true,
          data: ordered,
        });
      }
      return state;
    },
  };
}

/** The differences between two states, one line each. */
function diffStates(expectedName: string, expected: State, actualName: string, actual: State) {
  const problems: string[] = [];
  for (const table of SYNCED_TABLES) {
    for (const [id, want] of expected[table]) {
      const got = actual[table].get(id);
      if (got === undefined) {
        problems.push(
          `${table} ${id}: in ${expectedName} at ${want.version}, not in ${actualName}`,
        );
      } else if (JSON.stringify(got) !== JSON.stringify(want)) {
        problems.push(
          `${table} ${id}: ${expectedName} ${JSON.stringify(want)} ≠ ${actualName} ${
            JSON.stringify(got)
          }`,
        );
      }
    }
    for (const [id, got] of actual[table]) {
      if (!expected[table].has(id)) {
        problems.push(`${table} ${id}: in ${actualName} at ${got.version}, not in ${expectedName}`);
      }
    }
  }
  return problems;
}

const rowCount = (state: State) => SYNCED_TABLES.reduce((n, t) => n + state[t].size, 0);

/** A replica that syncs: its database and manager. */
interface Syncing {
  readonly name: string;
  readonly db: Database<Tables>;
  readonly manager: ServerSyncManager<Tables>;
}

/** Syncs every replica, round after round, until a round began with every outbox empty. */
async function syncUntilQuiet(replicas: readonly Syncing[]): Promise<void> {
  let lastError: unknown;
  for (let round = 0; round < 40; round++) {
    let quiet = true;
    for (const replica of replicas) {
      if (await replica.db.countDirtyRows() > 0) quiet = false;
    }
    let failed = false;
    for (const replica of replicas) {
      try {
        await replica.manager.syncNow();
      } catch (error) {
        failed = true;
        lastError = error;
      }
    }
    if (quiet && !failed) {
      // A pull through one instance may miss, for up to its watch interval,
      // what another instance committed (`server/change_feed.ts`): once that
      // has passed, one more round brings every replica all of it.
      await sleep(DEFAULT_WATCH_INTERVAL_MS + 50);
      for (const replica of replicas) await replica.manager.syncNow();
      return;
    }
    if (failed) await sleep(50);
  }
  const pending = await Promise.all(
    replicas.map(async (r) => `${r.name}: ${await r.db.countDirtyRows()}`),
  );
  assert.fail(`the replicas did not get quiet (outboxes ${pending.join(", ")}): ${lastError}`);
}

// ---------------------------------------------------------------------------
// What a killed writer's file holds.

interface Reported {
  /** Latest reported state per `table\0id`. */
  readonly rows: Map<string, { version: string; deleted: boolean }>;
  /** Announced atomic writes: fresh id range and whether it was reported committed. */
  readonly atomic: Map<string, { from: string; to: string; done: boolean }>;
  readonly settings: Set<string>;
  readonly syncErrors: number;
  /** True when the last sync the child began had not ended. */
  readonly midSync: boolean;
}

function parseReport(lines: readonly string[]): Reported {
  const reported: Reported = {
    rows: new Map(),
    atomic: new Map(),
    settings: new Set(),
    syncErrors: 0,
    midSync: false,
  };
  let syncErrors = 0;
  let midSync = false;
  for (const line of lines) {
    const [kind, ...rest] = line.split(" ");
    if (kind === "row") {
      const [table, id, version, deleted] = rest as [string, string, string, string];
      reported.rows.set(`${table}\u0000${id}`, { version, deleted: deleted === "1" });
    } else if (kind === "begin") {
      const [op, from, to] = rest as [string, string, string];
      reported.atomic.set(op, { from, to, done: false });
    } else if (kind === "done") {
      const entry = reported.atomic.get(rest[0]!);
      if (entry !== undefined) entry.done = true;
    } else if (kind === "set") reported.settings.add(rest[0]!);
    else if (kind === "sync-error") {
      syncErrors++;
      midSync = false;
    } else if (kind === "syncing" || kind === "synced") midSync = kind === "syncing";
  }
  return { ...reported, syncErrors, midSync };
}

interface StoredRow {
  readonly table: SyncedTable;
  readonly id: string;
  readonly version: string;
  readonly createdAt: string;
  readonly deleted: boolean;
  readonly data: Record<string, unknown>;
  /** Column tables: column (or `is_deleted`) → version. */
  readonly columnVersions: Record<string, string> | undefined;
}

/** What a replica's file holds, read with a client of its own. */
interface FileSnapshot {
  readonly integrity: string;
  readonly hlc: string | undefined;
  readonly rows: Map<string, StoredRow>;
  readonly entries: Map<string, string>;
  readonly rejected: number;
  readonly settings: Set<string>;
}

async function readFile(path: string): Promise<FileSnapshot> {
  const client = createClient({ url: `file:${path}` });
  try {
    const integrity = (await client.execute("PRAGMA integrity_check")).rows
      .map((row) => String(row[0])).join("; ");
    const meta = await client.execute(`SELECT value FROM _sync_meta WHERE key = 'hlc'`);
    const rows = new Map<string, StoredRow>();
    const db = await openDatabase({ adapter: readOnly(client), schema });
    for (const table of SYNCED_TABLES) {
      const versions = new Map<string, Record<string, string>>();
      if (COLUMN_TABLES.has(table)) {
        const { rows: raw } = await client.execute(
          `SELECT system_id, system_column_versions FROM ${table}`,
        );
        for (const row of raw) {
          versions.set(String(row.system_id), JSON.parse(String(row.system_column_versions)));
        }
      }
      for (const row of await db.all(table, { includeDeleted: true })) {
        const record = row as unknown as Record<string, unknown>;
        const id = String(record.system_id);
        rows.set(`${table}\u0000${id}`, {
          table,
          id,
          version: String(record.system_version),
          createdAt: String(record.system_created_at),
          deleted: Number(record.is_deleted) === 1,
          data: record,
          columnVersions: versions.get(id),
        });
      }
    }
    const { rows: entryRows } = await client.execute(
      `SELECT table_name, row_id, version FROM _dirty_rows`,
    );
    const entries = new Map(
      entryRows.map((row) => [`${row.table_name}\u0000${row.row_id}`, String(row.version)]),
    );
    const rejected = Number(
      (await client.execute(`SELECT count(*) AS n FROM _sync_rejected`)).rows[0]!.n,
    );
    const settings = new Set(
      (await client.execute(`SELECT key FROM settings`)).rows.map((row) => String(row.key)),
    );
    return {
      integrity,
      hlc: meta.rows[0] === undefined ? undefined : String(meta.rows[0].value),
      rows,
      entries,
      rejected,
      settings,
    };
  } finally {
    client.close();
  }
}

// The typed reads of `openDatabase` over a client the snapshot closes itself;
// writes are refused, so reading a killed writer's file changes nothing.
function readOnly(client: ReturnType<typeof createClient>) {
  const adapter = libsqlAdapter(client);
  return {
    ...adapter,
    batch: (statements: Parameters<typeof adapter.batch>[0]) =>
      statements.every((s) => /^\s*(SELECT|PRAGMA)/i.test(s.sql))
        ? adapter.batch(statements)
        : Promise.reject(new Error("the snapshot reader does not write")),
    close: () => Promise.resolve(),
  };
}

/** Every stored version of a row: its own, its creation's and its columns'. */
function versionsOf(row: StoredRow): string[] {
  return [row.version, row.createdAt, ...Object.values(row.columnVersions ?? {})];
}

/** How the atomic writes a kill interrupted (announced, not reported done) came out. */
interface Interrupted {
  /** Not there at all. */
  rolledBack: number;
  /** There completely: committed just before the kill. */
  committed: number;
}

/**
 * The checks every killed replica's file must pass, whether it synced or not;
 * returns how the interrupted atomic writes came out.
 */
function checkSoundness(file: FileSnapshot, reported: Reported, problems: string[]): Interrupted {
  const interrupted: Interrupted = { rolledBack: 0, committed: 0 };
  if (file.integrity !== "ok") problems.push(`PRAGMA integrity_check: ${file.integrity}`);
  if (file.hlc === undefined && file.rows.size > 0) {
    problems.push(`${file.rows.size} rows but no persisted clock (_sync_meta key hlc)`);
  }
  for (const row of file.rows.values()) {
    for (const version of versionsOf(row)) {
      if (file.hlc !== undefined && version > file.hlc) {
        problems.push(
          `${row.table} ${row.id}: version ${version} is ahead of the clock ${file.hlc}`,
        );
      }
    }
    if (row.columnVersions !== undefined) {
      const tracked = [...COLUMNS[row.table], "is_deleted"];
      const missing = tracked.filter((c) => row.columnVersions![c] === undefined);
      if (missing.length > 0) problems.push(`${row.table} ${row.id}: no version of ${missing}`);
      const newest = Object.values(row.columnVersions).reduce((a, b) => (a > b ? a : b), "");
      if (newest !== row.version) {
        problems.push(
          `${row.table} ${row.id}: system_version ${row.version} ≠ newest column version ${newest}`,
        );
      }
    }
  }
  for (const [key, version] of file.entries) {
    if (!file.rows.has(key)) {
      problems.push(`outbox entry ${key.replace("\u0000", " ")} at ${version} has no row`);
    }
  }
  // Every reported write survived the kill.
  for (const [key, want] of reported.rows) {
    const row = file.rows.get(key);
    const name = key.replace("\u0000", " ");
    if (row === undefined) problems.push(`reported write ${name} at ${want.version} is gone`);
    else if (row.version < want.version) {
      problems.push(`reported write ${name} at ${want.version} rolled back to ${row.version}`);
    } else if (
      // In a column table the tombstone flag has a version of its own: an
      // older delete merged later may set it under a newer row version.
      row.columnVersions === undefined && row.version === want.version &&
      row.deleted !== want.deleted
    ) {
      problems.push(`reported write ${name} at ${want.version}: deleted ${row.deleted}`);
    }
  }
  for (const key of reported.settings) {
    if (!file.settings.has(key)) problems.push(`reported setting ${key} is gone`);
  }
  // An atomic write is there completely or not at all, and completely once reported.
  const ids = new Set([...file.rows.values()].map((row) => row.id));
  for (const [op, { from, to, done }] of reported.atomic) {
    const [tag, first] = splitFresh(from);
    const [, last] = splitFresh(to);
    let present = 0;
    for (let n = first; n <= last; n++) if (ids.has(freshId(tag, n))) present++;
    const size = last - first + 1;
    if (done && present !== size) {
      problems.push(`committed atomic write ${op} (${from}..${to}): ${present} of ${size} rows`);
    } else if (present !== 0 && present !== size) {
      problems.push(`interrupted atomic write ${op} (${from}..${to}): ${present} of ${size} rows`);
    } else if (!done) {
      if (present === 0) interrupted.rolledBack++;
      else interrupted.committed++;
    }
  }
  return interrupted;
}

function splitFresh(id: string): [string, number] {
  const at = id.lastIndexOf("-");
  return [id.slice(0, at), Number(id.slice(at + 1))];
}

// ---------------------------------------------------------------------------

// A loop whose failure ends the run (`stop`) instead of going unnoticed; the
// error is reported where the returned promise is awaited.
function stopOnFailure(loop: Promise<unknown>, stop: () => void): Promise<unknown> {
  const guarded = loop.catch((error) => {
    stop();
    throw error;
  });
  guarded.catch(() => undefined);
  return guarded;
}

test("a writer killed with SIGKILL mid-write leaves every committed row with its outbox entry at its latest version, the clock ahead, and a sound file", async () => {
  const random = seededRandom(SEED);
  const dir = tempDir();
  const path = join(dir.path, "writer.db");
  const schedule: number[] = [];
  let rowsChecked = 0;
  let reportedWrites = 0;
  const interrupted: Interrupted = { rolledBack: 0, committed: 0 };
  try {
    let nodeId: string | undefined;
    for (let run = 0; run < KILLS; run++) {
      const delay = 20 + Math.floor(random() * 500);
      schedule.push(delay);
      const child = spawnChild(`writer run ${run}`, writerScript, [
        "write",
        "--db",
        path,
        "--seed",
        String(SEED),
        "--run",
        String(run),
      ], true);
      const [, id] = await child.waitFor(/^ready (\S+)$/);
      nodeId ??= id;
      assert.equal(id, nodeId, "the node id is kept across restarts");
      await sleep(delay);
      assert.ok(child.alive(), `the writer exited before the kill\n${child.output()}`);
      await child.kill();

      const reported = parseReport(child.lines);
      reportedWrites += reported.rows.size + reported.atomic.size;
      const file = await readFile(path);
      const problems: string[] = [];
      const outcome = checkSoundness(file, reported, problems);
      interrupted.rolledBack += outcome.rolledBack;
      interrupted.committed += outcome.committed;
      // No server here: every synced row waits in the outbox, at its latest version.
      for (const [key, row] of file.rows) {
        const entry = file.entries.get(key);
        if (entry === undefined) problems.push(`${row.table} ${row.id} has no outbox entry`);
        else if (entry !== row.version) {
          problems.push(`${row.table} ${row.id}: outbox entry at ${entry}, row at ${row.version}`);
        }
      }
      if (file.rejected !== 0) problems.push(`${file.rejected} rows in _sync_rejected`);
      failOn(problems, `after kill ${run + 1} (${delay} ms after ready)`);
      rowsChecked += file.rows.size;
      await reopenAndWrite(path, file);
    }
  } catch (error) {
    throw withReplay("writer", () => schedule.map((ms) => `${ms} ms after ready`), error);
  } finally {
    await killChildren();
    dir.cleanup();
  }
  console.log(
    `crash_safety writer: ${schedule.length} kills, ${rowsChecked} rows checked, ` +
      `${reportedWrites} reported rows and atomic writes verified, ` +
      `${interrupted.rolledBack + interrupted.committed} atomic writes cut by a kill ` +
      `(${interrupted.rolledBack} rolled back whole, ${interrupted.committed} committed whole) ` +
      `(seed ${SEED})`,
  );
});

/** Reopens with a wall clock stuck at 0: only the stored clock can put a new write ahead. */
async function reopenAndWrite(path: string, file: FileSnapshot): Promise<void> {
  const db = await openDatabase({
    adapter: libsqlAdapter(createClient({ url: `file:${path}` })),
    schema,
    now: () => 0,
  });
  try {
    const newest = [...file.rows.values()].flatMap(versionsOf).reduce(
      (a, b) => (a > b ? a : b),
      file.hlc ?? "",
    );
    const row = await db.insert("tasks", { title: "after the kill" });
    assert.ok(
      row.system_version > newest,
      `a write after reopening got ${row.system_version}, not after the newest stored ${newest}`,
    );
  } finally {
    await db.close();
  }
}

// ---------------------------------------------------------------------------

interface ServerProcess {
  readonly child: Child;
  readonly url: string;
}

test("two server processes on one file, one killed with SIGKILL again and again mid-push, lose no acknowledged write and converge to last-write-wins", async () => {
  const random = seededRandom(SEED + 1);
  const dir = tempDir();
  const dbPath = join(dir.path, "server.db");
  const servers: (ServerProcess | undefined)[] = [undefined, undefined];
  const schedule: { atMs: number; server: number; downMs: number }[] = [];
  const clients: TestClient<Tables>[] = [];
  const logs: CommittedWrite[][] = [];
  let stopped = false;
  const guard = (loop: Promise<unknown>) => stopOnFailure(loop, () => (stopped = true));
  const loops: Promise<unknown>[] = [];
  let serverDb: ServerDatabase | undefined;
  // Failed syncs: a server down, a request cut by a kill, or another error (the first kept).
  const syncs = { ok: 0, down: 0, cut: 0, other: 0, firstOther: "" };
  let rowsChecked = 0;
  let acknowledgedChecked = 0;

  const start = async (index: number) => {
    const child = spawnChild(`server ${index}`, serverScript, [
      "--db",
      dbPath,
      "--port",
      "0",
      "--schema",
      schemaModule,
    ], false);
    const [, url] = await child.waitFor(/server on (http:\/\/127\.0\.0\.1:\d+)/);
    servers[index] = { child, url: url! };
  };
  // Each client talks to one server; its base URL is routed to wherever that server listens now.
  // Pushes in flight per server: a kill waits for one, so that it lands mid-push.
  const pushing = [0, 0];
  const routed = (index: number): typeof fetch => (input, init) => {
    const server = servers[index];
    if (server === undefined || !server.child.alive()) {
      return Promise.reject(new TypeError(`server ${index} is down`));
    }
    const url = String(input);
    const response = fetch(url.replace(`http://server-${index}.test`, server.url), init);
    if (url.endsWith("/push")) {
      pushing[index]!++;
      const done = () => void pushing[index]!--;
      response.then(done, done);
    }
    return response;
  };

  try {
    // One after the other: two first starts at once on a new file are a test of their own.
    await start(0);
    await start(1);
    for (let i = 0; i < 3; i++) {
      const client = await openClient(schema, { url: `http://server-${i % 2}.test` }, {
        nodeId: `client${i}`,
        http: { fetch: routed(i % 2) },
      });
      clients.push(client);
      const log: CommittedWrite[] = [];
      logs.push(log);
      const workload = createWorkload({
        db: client.db,
        random: seededRandom(SEED * 31 + i),
        tag: `c${i}`,
        sizes: [2, 20, 100],
        merging: true,
      });
      const pause = seededRandom(SEED * 37 + i);
      loops.push(
        ...[
          (async () => {
            while (!stopped) {
              log.push(...(await workload.step()).writes);
              await sleep(1 + Math.floor(pause() * 12));
            }
          })(),
          (async () => {
            while (!stopped) {
              try {
                await client.manager.syncNow();
                syncs.ok++;
              } catch (error) {
                // Retried by the loop.
                const { code, message } = error as { code?: string; message?: string };
                if (code === "offline" && / is down/.test(message ?? "")) syncs.down++;
                else if (code === "offline") syncs.cut++;
                else if (syncs.other++ === 0) syncs.firstOther = String(error);
              }
              await sleep(Math.floor(pause() * 30));
            }
          })(),
        ].map(guard),
      );
    }

    // A killed server restarts in the background, so the next kill may come
    // while it boots, and both may be down at once.
    const restarts: (Promise<void> | undefined)[] = [undefined, undefined];
    const began = Date.now();
    for (let kill = 0; kill < KILLS && !stopped; kill++) {
      const afterMs = 100 + Math.floor(random() * 600);
      const downMs = Math.floor(random() * 200);
      await sleep(afterMs);
      // A server that is up, at random; if both are booting, the first back.
      let up = [0, 1].filter((i) => restarts[i] === undefined);
      if (up.length === 0) {
        await Promise.race(restarts);
        up = [0, 1].filter((i) => restarts[i] === undefined);
      }
      const index = up[Math.floor(random() * up.length)]!;
      for (let waited = 0; pushing[index] === 0 && waited < 100; waited++) await sleep(5);
      await sleep(Math.floor(random() * 3));
      schedule.push({ atMs: Date.now() - began, server: index, downMs });
      const server = servers[index]!;
      assert.ok(server.child.alive(), `server ${index} died by itself\n${server.child.output()}`);
      await server.child.kill();
      restarts[index] = guard(
        sleep(downMs).then(() => start(index)).then(() => {
          restarts[index] = undefined;
        }),
      ) as Promise<void>;
    }
    await Promise.all(restarts);
    await sleep(200);
    stopped = true;
    const outcomes = await Promise.allSettled(loops);
    for (const outcome of outcomes) if (outcome.status === "rejected") throw outcome.reason;
    const chaosMs = Date.now() - began;

    // The end: both servers go down hard and come back.
    for (const index of [0, 1]) {
      const server = servers[index]!;
      assert.ok(server.child.alive(), `server ${index} died by itself\n${server.child.output()}`);
      await server.child.kill();
    }
    await Promise.all([start(0), start(1)]);
    serverDb = await openServerDatabase({
      adapter: libsqlAdapter(createClient({ url: `file:${dbPath}`, timeout: 10_000 })),
      schema,
    });

    // A client's row without an outbox entry had every write on it acknowledged
    // (or beaten by a newer version pulled from the server): the server has it.
    const before = await serverRows(serverDb);
    const problems: string[] = [];
    for (const [i, client] of clients.entries()) {
      const entries = new Set(
        (await client.db.query(`SELECT table_name, row_id FROM _dirty_rows`)).map((row) =>
          `${row.table_name}\u0000${row.row_id}`
        ),
      );
      const rejected = await client.db.countRejectedRows();
      if (rejected > 0) problems.push(`client${i}: ${rejected} rows in _sync_rejected`);
      acknowledgedChecked += checkAcknowledged(`client${i}`, logs[i]!, entries, before, problems);
    }
    failOn(problems, "acknowledged writes after the kills");

    const replicas = clients.map((client, i) => ({
      name: `client${i}`,
      db: client.db,
      manager: client.manager,
    }));
    await syncUntilQuiet(replicas);
    const server = stateOfServer(await serverRows(serverDb));
    const oracle = createOracle();
    for (const log of logs) for (const write of log) oracle.add(write);
    failOn(diffStates("oracle", oracle.expected(), "server", server), "server vs oracle");
    for (const replica of replicas) {
      failOn(
        diffStates("server", server, replica.name, await clientState(replica.db)),
        `server vs ${replica.name}`,
      );
    }
    rowsChecked = rowCount(server) * (1 + replicas.length);
    console.log(
      `crash_safety servers: ${schedule.length} kills mid-push (+2 at the end) in ${chaosMs} ms, ` +
        `${oracle.writes} writes by 3 clients, ${syncs.ok} syncs ` +
        `(${syncs.cut} cut by a kill, ${syncs.down} refused while down, ${syncs.other} other ` +
        `failures${syncs.other > 0 ? `, the first: ${syncs.firstOther}` : ""}), ` +
        `${acknowledgedChecked} acknowledged writes and ${rowsChecked} rows checked (seed ${SEED})`,
    );
  } catch (error) {
    throw withReplay("servers", () => schedule, error);
  } finally {
    stopped = true;
    await Promise.allSettled(loops);
    for (const client of clients) {
      await client.manager.stop();
      await client.db.close();
    }
    await serverDb?.close();
    await killChildren();
    dir.cleanup();
  }
});

test("two server processes started at once on a new file both come up and serve it", async () => {
  const dir = tempDir();
  try {
    // The first open of a new file races the other process's: a few tries to meet the race.
    for (let attempt = 0; attempt < 2; attempt++) {
      const dbPath = join(dir.path, `fresh-${attempt}.db`);
      const started = [0, 1].map((index) =>
        spawnChild(`server ${index} (attempt ${attempt + 1})`, serverScript, [
          "--db",
          dbPath,
          "--port",
          "0",
          "--schema",
          schemaModule,
        ], false)
      );
      const urls = await Promise.all(
        started.map(async (child) => (await child.waitFor(/server on (http:\/\/\S+)/))[1]!),
      );
      for (const url of urls) assert.equal((await fetch(`${url}/health`)).status, 200);
      for (const child of started) await child.kill();
    }
  } finally {
    await killChildren();
    dir.cleanup();
  }
});

// The server's rows by table and id.
function rowsById(server: Record<SyncedTable, PullRow[]>): Map<string, PullRow> {
  const byId = new Map<string, PullRow>();
  for (const table of SYNCED_TABLES) {
    for (const row of server[table]) byId.set(`${table}\u0000${row.id}`, row);
  }
  return byId;
}

/**
 * Checks the logged writes of rows without an outbox entry against the server
 * rows; returns how many writes it checked.
 */
function checkAcknowledged(
  name: string,
  log: readonly CommittedWrite[],
  entries: ReadonlySet<string>,
  server: Record<SyncedTable, PullRow[]>,
  problems: string[],
): number {
  const byId = rowsById(server);
  let checked = 0;
  for (const write of log) {
    const key = `${write.table}\u0000${write.id}`;
    if (entries.has(key)) continue;
    checked++;
    const row = byId.get(key);
    if (row === undefined) {
      problems.push(`${name}: acknowledged ${write.table} ${write.id} at ${write.version} is gone`);
      continue;
    }
    if (!COLUMN_TABLES.has(write.table)) {
      if (row.version < write.version) {
        problems.push(
          `${name}: acknowledged ${write.table} ${write.id} at ${write.version}, server at ${row.version}`,
        );
      }
      continue;
    }
    for (const column of write.columns) {
      const held = row.columnVersions?.[column] ?? "";
      if (held < write.version) {
        problems.push(
          `${name}: acknowledged ${write.table} ${write.id}.${column} at ${write.version}, ` +
            `server at ${held || "nothing"}`,
        );
      }
    }
  }
  return checked;
}

// ---------------------------------------------------------------------------

const CHILD_NODE = "crash-client";

test("a client killed with SIGKILL mid-sync resumes from its file and converges with the server and last-write-wins", async () => {
  const random = seededRandom(SEED + 2);
  const dir = tempDir();
  const clientPath = join(dir.path, "client.db");
  const schedule: number[] = [];
  const server = await startServer(schema, { url: `file:${join(dir.path, "server.db")}` });
  const peer = await openClient(schema, server, { nodeId: "peer" });
  const oracle = createOracle();
  let stopped = false;
  const guard = (loop: Promise<unknown>) => stopOnFailure(loop, () => (stopped = true));
  let loops: Promise<unknown>[] = [];
  let final: Syncing | undefined;
  let rowsChecked = 0;
  let syncErrors = 0;
  let midSync = 0;
  let acknowledgedChecked = 0;
  const interrupted: Interrupted = { rolledBack: 0, committed: 0 };
  try {
    // Another replica writes meanwhile, so the killed client also merges pulled rows.
    const workload = createWorkload({
      db: peer.db,
      random: seededRandom(SEED * 41),
      tag: "peer",
      sizes: [2, 20, 200],
      merging: true,
    });
    const pause = seededRandom(SEED * 43);
    loops = [
      (async () => {
        while (!stopped) {
          for (const write of (await workload.step()).writes) oracle.add(write);
          await sleep(Math.floor(pause() * 10));
        }
      })(),
      (async () => {
        while (!stopped) {
          await peer.manager.syncNow().catch(() => undefined);
          await sleep(Math.floor(pause() * 40));
        }
      })(),
    ].map(guard);

    for (let run = 0; run < KILLS && !stopped; run++) {
      const delay = 50 + Math.floor(random() * 550);
      schedule.push(delay);
      const child = spawnChild(`client run ${run}`, writerScript, [
        "sync",
        "--db",
        clientPath,
        "--url",
        server.url,
        "--seed",
        String(SEED),
        "--run",
        String(run),
        "--node-id",
        CHILD_NODE,
      ], true);
      await child.waitFor(/^ready /);
      await sleep(delay);
      assert.ok(child.alive(), `the client exited before the kill\n${child.output()}`);
      await child.kill();

      const reported = parseReport(child.lines);
      syncErrors += reported.syncErrors;
      if (reported.midSync) midSync++;
      const file = await readFile(clientPath);
      const problems: string[] = [];
      const outcome = checkSoundness(file, reported, problems);
      interrupted.rolledBack += outcome.rolledBack;
      interrupted.committed += outcome.committed;
      checkClientOutbox(file, problems);
      if (file.rejected !== 0) problems.push(`${file.rejected} rows in _sync_rejected`);
      acknowledgedChecked += checkChildAcknowledged(
        file,
        await serverRows(server.database),
        problems,
      );
      failOn(problems, `after kill ${run + 1} (${delay} ms after ready)`);
      rowsChecked += file.rows.size;
      addChildWrites(file, oracle);
    }
    stopped = true;
    for (const outcome of await Promise.allSettled(loops)) {
      if (outcome.status === "rejected") throw outcome.reason;
    }

    // The final clean run, in this process, on the killed client's file.
    const db = await openDatabase({
      adapter: libsqlAdapter(createClient({ url: `file:${clientPath}` })),
      schema,
    });
    final = {
      name: "client",
      db,
      manager: new ServerSyncManager({ database: db, ...createHttpSync({ url: server.url }) }),
    };
    assert.equal(db.nodeId, CHILD_NODE);
    const replicas = [final, { name: "peer", db: peer.db, manager: peer.manager }];
    await syncUntilQuiet(replicas);
    const state = stateOfServer(await serverRows(server.database));
    failOn(diffStates("oracle", oracle.expected(), "server", state), "server vs oracle");
    for (const replica of replicas) {
      failOn(
        diffStates("server", state, replica.name, await clientState(replica.db)),
        `server vs ${replica.name}`,
      );
    }
    rowsChecked += rowCount(state) * 3;
    console.log(
      `crash_safety client: ${schedule.length} kills (${midSync} during a sync, ` +
        `${interrupted.rolledBack + interrupted.committed} during an atomic write), ` +
        `${rowsChecked} rows checked, ${acknowledgedChecked} acknowledged writes checked, ` +
        `${oracle.writes} oracle entries, ${syncErrors} failed syncs in the child (seed ${SEED})`,
    );
  } catch (error) {
    throw withReplay("client", () => schedule.map((ms) => `${ms} ms after ready`), error);
  } finally {
    stopped = true;
    await Promise.allSettled(loops);
    await killChildren();
    if (final !== undefined) {
      await final.manager.stop();
      await final.db.close();
    }
    await peer.manager.stop();
    await peer.db.close();
    await server.close();
    dir.cleanup();
  }
});

const ownVersion = (version: string) => version.endsWith(`:${CHILD_NODE}`);

/**
 * The outbox of a syncing client: an entry is one of its own writes, a row
 * table's entry is at the row's version (an entry a newer pulled version beat
 * is dropped), a column table's is not older than any of its own column writes.
 */
function checkClientOutbox(file: FileSnapshot, problems: string[]): void {
  for (const [key, version] of file.entries) {
    const row = file.rows.get(key);
    if (row === undefined) continue; // reported by checkSoundness
    const name = `${row.table} ${row.id}`;
    if (!ownVersion(version)) problems.push(`${name}: outbox entry at another node's ${version}`);
    if (row.columnVersions === undefined) {
      if (version !== row.version) {
        problems.push(`${name}: outbox entry at ${version}, row at ${row.version}`);
      }
      continue;
    }
    for (const [column, held] of Object.entries(row.columnVersions)) {
      if (ownVersion(held) && held > version) {
        problems.push(
          `${name}: own write of ${column} at ${held} is newer than its entry ${version}`,
        );
      }
    }
  }
}

/**
 * The client's own writes on rows without an outbox entry were acknowledged:
 * the server holds them or something newer. Returns how many were checked.
 */
function checkChildAcknowledged(
  file: FileSnapshot,
  server: Record<SyncedTable, PullRow[]>,
  problems: string[],
): number {
  const byId = rowsById(server);
  let checked = 0;
  for (const [key, row] of file.rows) {
    if (file.entries.has(key)) continue;
    const held = byId.get(key);
    const owned = row.columnVersions === undefined
      ? (ownVersion(row.version) ? [["row", row.version] as const] : [])
      : Object.entries(row.columnVersions).filter(([, version]) => ownVersion(version));
    for (const [column, version] of owned) {
      checked++;
      const there = column === "row" ? held?.version : held?.columnVersions?.[column];
      if (there === undefined || there < version) {
        problems.push(
          `acknowledged ${row.table} ${row.id} (${column}) at ${version}, server at ${
            there ?? "nothing"
          }`,
        );
      }
    }
  }
  return checked;
}

/** The killed client's own writes, as its file holds them, into the oracle. */
function addChildWrites(file: FileSnapshot, oracle: ReturnType<typeof createOracle>): void {
  for (const row of file.rows.values()) {
    if (row.columnVersions === undefined) {
      if (!ownVersion(row.version)) continue;
      oracle.add({
        table: row.table,
        id: row.id,
        version: row.version,
        deleted: row.deleted,
        data: row.data,
        columns: [...COLUMNS[row.table], "is_deleted"],
        fresh: false,
      });
      continue;
    }
    for (const [column, version] of Object.entries(row.columnVersions)) {
      if (!ownVersion(version)) continue;
      oracle.addColumn(
        row.table,
        row.id,
        column,
        version,
        column === "is_deleted" ? row.deleted : row.data[column],
      );
    }
  }
}
