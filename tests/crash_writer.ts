/**
 * The writer that tests/crash_safety.test.ts kills with SIGKILL, and the
 * random write workload it shares with that test's in-process clients.
 *
 * As a child process it opens a `file:` database with `openDatabase` (the
 * `schema` of tests/fixtures.ts: a row table, a column table, a table with
 * bytes and JSON, a local-only table) and writes until it is killed: inserts,
 * updates, deletes, `insertMany` of various sizes and transactions mixing
 * them. It reports on stdout what it has committed, one line each, written
 * after the commit, so a line that reaches the test describes a write that
 * must survive the kill (a write that committed without its line is only
 * unreported):
 *
 * ```
 * ready <nodeId>                          opened; writes start
 * begin <op> <fromId> <toId>              an atomic write of the fresh ids fromId..toId starts
 * done <op>                               ...and committed
 * row <table> <id> <version> <deleted>    a committed row state (not of fresh ids of a begin)
 * set <key>                               a committed write to the local-only table
 * syncing / synced                        (sync mode) a sync starts / ends
 * sync-error <code>                       (sync mode) a sync failed; the loop goes on
 * ```
 *
 * ```sh
 * node --import tsx tests/crash_writer.ts write --db /tmp/a.db --seed 1 --run 0
 * node --import tsx tests/crash_writer.ts sync --db /tmp/b.db --seed 1 --run 0 \
 *   --url http://127.0.0.1:8787 --node-id crash-client
 * ```
 *
 * `write` only writes (no server: every row must keep its outbox entry);
 * `sync` also syncs with the server at `--url` in a loop of its own, so the
 * kill lands in the middle of pushes, pulls and merges. The process exits
 * when its stdin closes, so it never outlives the test that started it.
 *
 * @module
 */

import process from "node:process";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createClient } from "@libsql/client";
import { type Database, openDatabase, type Transaction } from "../src/database.ts";
import { SyncError } from "../src/errors.ts";
import { createHttpSync } from "../src/http_sync.ts";
import { libsqlAdapter } from "../src/libsql.ts";
import { ServerSyncManager } from "../src/sync_manager.ts";
import { schema } from "./fixtures.ts";

/** The tables of the workload's schema. */
export type Tables = typeof schema.tables;
/** The synced tables the workload writes. */
export type SyncedTable = "tasks" | "notes" | "files";
/** The synced tables, in a fixed order. */
export const SYNCED_TABLES: readonly SyncedTable[] = ["tasks", "notes", "files"];
/** The declared columns of each synced table. */
export const COLUMNS: Readonly<Record<SyncedTable, readonly string[]>> = {
  tasks: ["title", "done", "notes"],
  notes: ["body", "pinned", "color"],
  files: ["name", "size", "bytes", "meta", "hidden"],
};
/** The `lww: "column"` tables. */
export const COLUMN_TABLES: ReadonlySet<string> = new Set(["notes"]);

/** A seeded random number generator (mulberry32): numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** One committed write, as the oracle of the test needs it. */
export interface CommittedWrite {
  readonly table: SyncedTable;
  readonly id: string;
  /** The version the write stamped. */
  readonly version: string;
  /** The row's tombstone flag after the write. */
  readonly deleted: boolean;
  /** The row's declared columns after the write. */
  readonly data: Record<string, unknown>;
  /** The columns the write set (`is_deleted` for inserts and deletes). */
  readonly columns: readonly string[];
  /** An insert of an explicit id announced by a `begin` line. */
  readonly fresh: boolean;
}

/** What one step of the workload did. */
export interface StepResult {
  /** The step's number. */
  readonly op: number;
  /** The writes it committed, in order. */
  readonly writes: CommittedWrite[];
  /** Keys of the local-only table it wrote. */
  readonly settings: string[];
  /** True for a write of several statements (an `insertMany` or a transaction). */
  readonly atomic: boolean;
}

/** Options of {@linkcode createWorkload}. */
export interface WorkloadOptions {
  /** The database written. */
  readonly db: Database<Tables>;
  /** The random numbers that pick each write. */
  readonly random: () => number;
  /** Prefix of the explicit ids this workload inserts (unique per process run). */
  readonly tag: string;
  /** Row counts `insertMany` picks from. */
  readonly sizes: readonly number[];
  /**
   * True when server changes are merged meanwhile: a delete then reads its
   * version back inside its own transaction, and the ids known to be live are
   * refreshed now and then.
   */
  readonly merging: boolean;
  /** Called before an atomic write of the fresh ids `from`..`to` starts. */
  readonly onBegin?: (op: number, from: string, to: string) => void;
}

/** A random write workload over one database. */
export interface Workload {
  /** Makes one random write (or a transaction of several) and returns what committed. */
  step(): Promise<StepResult>;
  /** Reloads the ids of the rows that are not deleted. */
  refresh(): Promise<void>;
}

type Target = Database<Tables> | Transaction<Tables>;
type Plan =
  | { kind: "insert" | "update" | "delete"; table: SyncedTable }
  | { kind: "insertMany"; table: SyncedTable; size: number }
  | { kind: "setting" };

/** The id of the `n`th explicit id of a workload tagged `tag`: sorts by `n`. */
export function freshId(tag: string, n: number): string {
  return `${tag}-${String(n).padStart(7, "0")}`;
}

/** Creates the workload: call `step()` in a loop. */
export function createWorkload(options: WorkloadOptions): Workload {
  const { db, random, tag, sizes, merging } = options;
  const live: Record<SyncedTable, string[]> = { tasks: [], notes: [], files: [] };
  let next = 0;
  let ops = 0;
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const table = () => pick(SYNCED_TABLES);

  async function refresh(): Promise<void> {
    for (const name of SYNCED_TABLES) {
      const rows = await db.query(
        `SELECT system_id FROM ${name} WHERE is_deleted = 0 ORDER BY system_id`,
      );
      live[name] = rows.map((row) => String(row.system_id));
    }
  }

  function planStep(): Plan[] {
    const roll = random();
    if (roll < 0.2) return [{ kind: "insert", table: table() }];
    if (roll < 0.45) return [{ kind: "update", table: table() }];
    if (roll < 0.53) return [{ kind: "delete", table: table() }];
    if (roll < 0.61) return [{ kind: "insertMany", table: table(), size: pick(sizes) }];
    if (roll < 0.66) return [{ kind: "setting" }];
    const plans: Plan[] = [];
    const count = 2 + Math.floor(random() * 5);
    for (let i = 0; i < count; i++) {
      const kind = pick([
        "insert",
        "insert",
        "update",
        "update",
        "delete",
        "insertMany",
        "setting",
      ]);
      if (kind === "setting") plans.push({ kind });
      else if (kind === "insertMany") {
        plans.push({ kind, table: table(), size: pick(sizes.filter((s) => s <= 100)) });
      } else plans.push({ kind, table: table() } as Plan);
    }
    return plans;
  }

  // Inserts done inside an atomic step use explicit ids announced beforehand.
  const freshCount = (plans: readonly Plan[]) =>
    plans.reduce((n, p) => n + (p.kind === "insertMany" ? p.size : p.kind === "insert" ? 1 : 0), 0);

  async function step(): Promise<StepResult> {
    const op = ++ops;
    if (merging && op % 64 === 1) await refresh();
    const plans = planStep();
    const atomic = plans.length > 1 || plans[0]!.kind === "insertMany";
    const writes: CommittedWrite[] = [];
    const settings: string[] = [];
    if (!atomic) {
      const removed: [SyncedTable, string][] = [];
      await run(db, plans[0]!, undefined, writes, settings, removed);
      apply(writes, removed);
      return { op, writes, settings, atomic };
    }
    const first = next;
    next += freshCount(plans);
    if (next > first) options.onBegin?.(op, freshId(tag, first), freshId(tag, next - 1));
    let n = first;
    const ids = () => freshId(tag, n++);
    const removed: [SyncedTable, string][] = [];
    if (plans.length === 1) {
      await run(db, plans[0]!, ids, writes, settings, removed);
    } else {
      await db.transaction(async (tx) => {
        for (const plan of plans) await run(tx, plan, ids, writes, settings, removed);
      });
    }
    apply(writes, removed);
    return { op, writes, settings, atomic };
  }

  // Live ids change only once a step has committed.
  function apply(writes: readonly CommittedWrite[], removed: readonly [SyncedTable, string][]) {
    for (const write of writes) {
      if (write.columns.includes("is_deleted") && !write.deleted) live[write.table].push(write.id);
    }
    for (const [name, id] of removed) {
      const list = live[name];
      const at = list.indexOf(id);
      if (at >= 0) list.splice(at, 1);
    }
  }

  async function run(
    target: Target,
    plan: Plan,
    ids: (() => string) | undefined,
    writes: CommittedWrite[],
    settings: string[],
    removed: [SyncedTable, string][],
  ): Promise<void> {
    if (plan.kind === "setting") {
      const key = `k${Math.floor(random() * 8)}`;
      const value = { theme: `t${Math.floor(random() * 1000)}` };
      if (await target.get("settings", key) === undefined) {
        await target.insert("settings", { key, value });
      } else await target.update("settings", key, { value });
      settings.push(key);
      return;
    }
    const { table } = plan;
    if (plan.kind === "insert" || plan.kind === "insertMany") {
      const count = plan.kind === "insertMany" ? plan.size : 1;
      const values = Array.from({ length: count }, () => {
        const row = insertValues(table, random);
        return ids === undefined ? row : { ...row, system_id: ids() };
      });
      const rows = await target.insertMany(table, values as never[]);
      for (const row of rows) {
        writes.push(committed(table, row, [...COLUMNS[table], "is_deleted"], ids !== undefined));
      }
      return;
    }
    const candidates = removed.length === 0
      ? live[table]
      : live[table].filter((id) => !removed.some(([t, r]) => t === table && r === id));
    if (candidates.length === 0) return;
    const id = pick(candidates);
    try {
      if (plan.kind === "update") {
        const patch = patchValues(table, random);
        const row = await target.update(table, id, patch as never);
        writes.push(committed(table, row, Object.keys(patch), false));
        return;
      }
      const row = await deleteRow(target, table, id);
      removed.push([table, id]);
      writes.push(committed(table, row, ["is_deleted"], false));
    } catch (error) {
      // A row another replica deleted meanwhile (merging only).
      if (!(merging && error instanceof SyncError && error.code === "not_found")) throw error;
      removed.push([table, id]);
    }
  }

  // The tombstone's version is read back where no merge can come between.
  async function deleteRow(target: Target, table: SyncedTable, id: string) {
    const read = async (t: Target) => {
      await t.delete(table, id);
      return (await t.get(table, id, { includeDeleted: true }))!;
    };
    if (target !== db || !merging) return await read(target);
    return await db.transaction(read);
  }

  return { step, refresh };
}

function committed(
  table: SyncedTable,
  row: Record<string, unknown>,
  columns: readonly string[],
  fresh: boolean,
): CommittedWrite {
  const data: Record<string, unknown> = {};
  for (const name of COLUMNS[table]) data[name] = row[name];
  return {
    table,
    id: String(row.system_id),
    version: String(row.system_version),
    deleted: Number(row.is_deleted) === 1,
    data,
    columns,
    fresh,
  };
}

function insertValues(table: SyncedTable, random: () => number): Record<string, unknown> {
  const n = Math.floor(random() * 1_000_000);
  if (table === "tasks") {
    return { title: `task ${n}`, done: n % 2, notes: n % 3 === 0 ? null : `note ${n}` };
  }
  if (table === "notes") {
    // Defaults for body and pinned now and then.
    return n % 4 === 0 ? { color: "grey" } : {
      body: `body ${n}`,
      pinned: n % 2 === 0,
      color: n % 3 === 0 ? null : "red",
    };
  }
  return {
    name: `file ${n}`,
    size: n / 7,
    bytes: bytesOf(n, Math.floor(random() * 48)),
    meta: { n, tags: [n % 5, "x"] },
    hidden: n % 2 === 0,
  };
}

// One or two columns: concurrent edits of different columns of a note both survive.
function patchValues(table: SyncedTable, random: () => number): Record<string, unknown> {
  const all = insertValues(table, random);
  const names = COLUMNS[table];
  const chosen = names.filter(() => random() < 0.5);
  const patch: Record<string, unknown> = {};
  for (const name of chosen.length > 0 ? chosen : [names[0]!]) {
    patch[name] = all[name] ?? (name === "body" ? "" : name === "pinned" ? false : null);
  }
  return patch;
}

function bytesOf(seed: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (seed * 31 + i * 7) & 0xff;
  return bytes;
}

// ---------------------------------------------------------------------------
// The child process.

function out(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
}

function report(result: StepResult): void {
  const lines: string[] = [];
  for (const write of result.writes) {
    if (write.fresh) continue;
    lines.push(`row ${write.table} ${write.id} ${write.version} ${write.deleted ? 1 : 0}`);
  }
  for (const key of result.settings) lines.push(`set ${key}`);
  if (result.atomic) lines.push(`done ${result.op}`);
  if (lines.length > 0) out(lines.join("\n"));
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

async function main(): Promise<void> {
  const { positionals, values: flags } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: {
      db: { type: "string" },
      seed: { type: "string", default: "1" },
      run: { type: "string", default: "0" },
      url: { type: "string" },
      "node-id": { type: "string" },
    },
  });
  const mode = positionals[0];
  if ((mode !== "write" && mode !== "sync") || flags.db === undefined) {
    console.error("Usage: crash_writer.ts write|sync --db PATH [--seed N] [--run K] [--url URL]");
    process.exit(2);
  }
  // The test holds the other end of stdin: when it is gone, so is this process.
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
  process.stdin.resume();

  const run = Number(flags.run);
  const random = seededRandom(Number(flags.seed) * 7919 + run);
  const db = await openDatabase({
    adapter: libsqlAdapter(createClient({ url: `file:${flags.db}` })),
    schema,
    nodeId: flags["node-id"],
  });
  const workload = createWorkload({
    db,
    random,
    tag: `k${run}`,
    sizes: mode === "write" ? [2, 10, 100, 1_000, 2_500] : [2, 20, 200],
    merging: mode === "sync",
    onBegin: (op, from, to) => out(`begin ${op} ${from} ${to}`),
  });
  await workload.refresh();
  out(`ready ${db.nodeId}`);

  const writeLoop = async () => {
    for (let i = 0;; i++) {
      report(await workload.step());
      // Let timers and stdin run: local libSQL calls finish without yielding.
      if (mode === "sync") await sleep(Math.floor(random() * 4));
      else if (i % 16 === 15) await sleep(0);
    }
  };
  if (mode === "write") return await writeLoop();

  const manager = new ServerSyncManager({ database: db, ...createHttpSync({ url: flags.url! }) });
  const pause = seededRandom(Number(flags.seed) * 104_729 + run);
  const syncLoop = async () => {
    for (;;) {
      try {
        out("syncing");
        await manager.syncNow();
        out("synced");
      } catch (error) {
        out(`sync-error ${(error as { code?: string }).code ?? String(error)}`);
      }
      await sleep(Math.floor(pause() * 25));
    }
  };
  await Promise.all([writeLoop(), syncLoop()]);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error("crash_writer failed:", error);
    process.exit(1);
  });
}
