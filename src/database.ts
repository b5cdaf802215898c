/**
 * The local database: a typed view over an adapter, with tracked writes, the
 * outbox, and `applyServerChanges`.
 *
 * Every write to a synced table runs as one batch (or inside the caller's
 * transaction) together with its outbox entry and the persisted clock, so a
 * crash can never leave a row without its entry. Reads hide tombstones unless
 * asked.
 *
 * Operations run one at a time on the adapter. Inside `transaction(fn)`, use
 * the `tx` handed to `fn`: a call on the database itself waits for the
 * transaction to end, so awaiting one inside `fn` would never finish.
 *
 * @example
 * ```ts
 * const db = await openDatabase({ adapter: libsqlAdapter(createClient({ url: "file:app.db" })), schema });
 * const task = await db.insert("tasks", { title: "Buy milk" });
 * await db.update("tasks", task.system_id, { done: 1 });
 * const outbox = await db.getDirtyRows(); // one entry, at the latest version
 * ```
 *
 * @module
 */

import { type WatchOptions, watchQuery, watchReads } from "./watch.ts";
import type { SqlAdapter, SqlExecutor, SqlResult, SqlStatement, SqlValue } from "./adapter.ts";
import { SyncError } from "./errors.ts";
import { createHlc, type HlcClock, randomNodeId } from "./hlc.ts";
import {
  type ApplyResult,
  planServerChanges,
  type ServerChanges,
  writeServerChanges,
} from "./merge.ts";
import { readCursors } from "./cursors.ts";
import { persistClockStatement, setMetaStatement } from "./meta.ts";
import { migrate } from "./migrate.ts";
import {
  acknowledgeStatements,
  countDirtyRows,
  type DirtyRow,
  type DirtyRowAck,
  type OutboxRead,
  readOutbox,
} from "./outbox.ts";
import {
  countRejectedRows,
  discardRejectedStatement,
  readRejectedRows,
  type RejectedRow,
  type Rejection,
  rejectStatements,
  retryRejectedStatements,
} from "./rejected.ts";
import type { InsertOf, PatchOf, RowOf, Schema, TableDef } from "./schema.ts";
import { decodeRow, describeTables, type TableInfo } from "./table_info.ts";
import { empty, id, raw, sql } from "./sql.ts";
import { prepareDelete, prepareInsert, prepareUpdate } from "./writes.ts";

/** Options of {@linkcode openDatabase}. */
export interface OpenDatabaseOptions<T extends Record<string, TableDef>> {
  /** The SQL engine, e.g. `libsqlAdapter(createClient({ url: "file:app.db" }))`. */
  adapter: SqlAdapter;
  /** The declared schema. */
  schema: Schema<T>;
  /** This replica's node id; defaults to the stored one, or a new random id on first open. */
  nodeId?: string;
  /** Wall clock in ms for the HLC (tests inject one). Defaults to `Date.now`. */
  now?: () => number;
  /** Largest accepted lead of a remote version over local time, in ms. Defaults to 60 s. */
  maxDrift?: number;
}

/** Options of reads. */
export interface ReadOptions {
  /** Include tombstones (`is_deleted = 1`). Default false. */
  includeDeleted?: boolean;
}

/** Options of `all`. */
export interface AllOptions extends ReadOptions {
  /** At most this many rows. */
  limit?: number;
  /** Skip this many rows first. */
  offset?: number;
}

/** Options of `getDirtyRows`. */
export interface DirtyRowsOptions {
  /** At most this many entries (default 1000). */
  limit?: number;
  /**
   * Only the entries after this row, which an earlier `getDirtyRows` returned,
   * in outbox order: reads the next batch while the previous one is still
   * being sent (not acknowledged yet). An entry rewritten since moves to the
   * end, so it is read again, at its new version.
   */
  after?: DirtyRowAck;
}

/** The names of a schema's tables. */
export type TableName<T> = keyof T & string;

/** Options of `getOutboxBatch`. */
export interface OutboxBatchOptions {
  /** At most this many entries (default 1000). */
  limit?: number;
  /**
   * Only the entries after this batch's last one, in outbox order: reads the
   * next batch while the previous one is still being sent.
   */
  after?: OutboxBatch;
}

/**
 * One read of the outbox (`getOutboxBatch`): its changes, and how to
 * acknowledge them. An acknowledgement removes an entry only while it holds
 * the version sent, compared within the read it came from: a write made
 * after the read always survives.
 */
export interface OutboxBatch {
  /** The changes, oldest first. */
  readonly rows: DirtyRow[];
  /** Acknowledges `rows` of this batch (default: all of them) in one write. */
  complete(rows?: readonly DirtyRowAck[]): Promise<void>;
}

/** What `completeBatches` acknowledges: a batch and which of its rows (default all). */
export interface BatchCompletion {
  /** The batch the rows came from. */
  readonly batch: OutboxBatch;
  /** The rows acknowledged; all of the batch's when left out. */
  readonly rows?: readonly DirtyRowAck[];
}

/** Reads and writes, on the database or inside a transaction. */
export interface DatabaseOperations<T extends Record<string, TableDef>> {
  /** Inserts a row; synced tables stamp it and record it in the outbox. */
  insert<K extends TableName<T>>(table: K, values: InsertOf<T[K]>): Promise<RowOf<T[K]>>;
  /** Inserts rows in one transaction. */
  insertMany<K extends TableName<T>>(
    table: K,
    values: readonly InsertOf<T[K]>[],
  ): Promise<RowOf<T[K]>[]>;
  /**
   * Updates columns of a row.
   * @throws {SyncError} `not_found` for an unknown or deleted row.
   */
  update<K extends TableName<T>>(
    table: K,
    systemId: string | number,
    patch: PatchOf<T[K]>,
  ): Promise<RowOf<T[K]>>;
  /**
   * Deletes a row: a tombstone (a new version with `is_deleted = 1`) for synced tables.
   * @throws {SyncError} `not_found` for an unknown or already deleted row.
   */
  delete<K extends TableName<T>>(table: K, systemId: string | number): Promise<void>;
  /** Reads one row by its key (`system_id` for synced tables). */
  get<K extends TableName<T>>(
    table: K,
    systemId: string | number,
    options?: ReadOptions,
  ): Promise<RowOf<T[K]> | undefined>;
  /** Reads the rows of a table in key order (creation order for synced tables). */
  all<K extends TableName<T>>(table: K, options?: AllOptions): Promise<RowOf<T[K]>[]>;
  /** Runs a read-only SQL query with positional arguments; returns raw rows. */
  query(sql: string, args?: readonly SqlValue[]): Promise<Record<string, unknown>[]>;
}

/** The operations available inside `transaction(fn)`. */
export type Transaction<T extends Record<string, TableDef>> = DatabaseOperations<T>;

/** What {@linkcode Database.onChange} tells a listener. */
export interface DatabaseChange {
  /**
   * The tables the change touched: declared tables, and `_sync_rejected`
   * when a refused change was set aside, retried or discarded.
   */
  readonly tables: readonly string[];
  /** `"local"` for this replica's own writes, `"remote"` for a merge of server changes. */
  readonly source: "local" | "remote";
  /** For a merge: the rows received per table (as `applyServerChanges` answers them). */
  readonly received?: Readonly<Record<string, number>>;
}

/** A local database. */
export interface Database<T extends Record<string, TableDef> = Record<string, TableDef>>
  extends DatabaseOperations<T> {
  /** The declared schema. */
  readonly schema: Schema<T>;
  /** This replica's clock. */
  readonly hlc: HlcClock;
  /** This replica's node id. */
  readonly nodeId: string;
  /** Runs `fn` in one write transaction: commit on resolve, rollback on throw. */
  transaction<R>(fn: (tx: Transaction<T>) => Promise<R>): Promise<R>;
  /**
   * Calls `listener` after every committed change — a local write, a
   * committed `transaction` (never a rolled-back one), a merge by
   * `applyServerChanges` that changed rows, a retried or discarded
   * rejection — with the tables it changed and where it came from; returns
   * the function that unsubscribes it. A listener that throws affects
   * neither the other listeners nor the write (its error is reported).
   */
  onChange(listener: (change: DatabaseChange) => void): () => void;
  /**
   * A live query: calls `listener` with the rows of `sql` (plain objects, as
   * `query` gives them) at once, then again after every committed change to
   * a table the query reads — as SQLite's plan of it says, views and joins
   * included, unless `options.tables` names them. Re-runs coalesce, and the
   * listener never sees an older state after a newer one. Returns the
   * function that stops it.
   *
   * @example
   * ```ts
   * const stop = db.watch("SELECT title FROM tasks WHERE done = ?", [0], (rows) => render(rows));
   * ```
   */
  watch(
    sql: string,
    args: readonly SqlValue[],
    listener: (rows: Record<string, unknown>[]) => void,
    options?: WatchOptions,
  ): () => void;
  /**
   * {@linkcode Database.watch} over `all(table, options)`: the table's typed
   * rows, at once and after every committed change to the table.
   *
   * @example
   * ```ts
   * const stop = db.watchAll("tasks", (tasks) => render(tasks)); // tasks: typed rows
   * ```
   */
  watchAll<K extends TableName<T>>(
    table: K,
    listener: (rows: RowOf<T[K]>[]) => void,
    options?: AllOptions & Pick<WatchOptions, "onError" | "throttle">,
  ): () => void;
  /**
   * Merges a pull response's `changes` (last-write-wins) and stores each table's cursor,
   * in one transaction.
   * @throws {SyncError} for unknown tables/columns, malformed versions or values, or
   * `clock_drift`; nothing is applied then.
   */
  applyServerChanges(changes: ServerChanges): Promise<ApplyResult>;
  /** The outbox, oldest change first. */
  getDirtyRows(options?: DirtyRowsOptions): Promise<DirtyRow[]>;
  /** One read of the outbox, oldest change first, that knows how to acknowledge itself. */
  getOutboxBatch(options?: OutboxBatchOptions): Promise<OutboxBatch>;
  /** Acknowledges the rows of several batches in one write. */
  completeBatches(completions: readonly BatchCompletion[]): Promise<void>;
  /** How many rows wait in the outbox. */
  countDirtyRows(): Promise<number>;
  /**
   * Removes sent entries whose version is not newer than the one sent. Pass
   * the row objects `getDirtyRows` returned (of one read or several): entries
   * are compared with the newest version acknowledged for their table among
   * the rows of the same read, which a write made after that read always
   * exceeds. Other acknowledgements (copies, rows read by another process)
   * count as one read: pass those of one read at a time.
   */
  acknowledgeDirtyRows(rows: readonly DirtyRowAck[]): Promise<void>;
  /** Moves changes the server refused from the outbox to `_sync_rejected`, with the reason. */
  rejectDirtyRows(rejections: readonly Rejection[]): Promise<void>;
  /** The changes the server refused, with the reason: nothing is dropped silently. */
  getRejectedRows(): Promise<RejectedRow[]>;
  /** How many refused changes are kept. */
  countRejectedRows(): Promise<number>;
  /**
   * Sends a rejected row again (typically after editing it): puts it back in the
   * outbox at its current version and forgets the rejection.
   */
  retryRejectedRow(table: TableName<T>, systemId: string): Promise<void>;
  /** Forgets a rejection; the local row stays as it is until the server sends a newer version. */
  discardRejectedRow(table: TableName<T>, systemId: string): Promise<void>;
  /** The stored cursor of every synced table (`null` before its first pull): the seed's `tableTimestamps`. */
  getCursors(): Promise<Record<string, unknown>>;
  /** Closes the adapter. */
  close(): Promise<void>;
  /** Closes the adapter (`await using db = await openDatabase(…)`). */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Opens (creating and migrating) a local database.
 *
 * Its body is longer than a screen because it is one object: the
 * database's methods, each a few lines over the same adapter, clock and
 * listeners (the statements are `writes.ts`', the merge `merge.ts`', the
 * outbox `outbox.ts`'); split apart, they would pass that state around.
 *
 * @throws {SyncError} `destructive_migration` when the stored tables cannot be
 * migrated to `schema` without losing or inventing data.
 * @example
 * ```ts
 * import { createClient } from "@libsql/client";
 * import { libsqlAdapter } from "@declarative/sync/libsql";
 * const db = await openDatabase({ adapter: libsqlAdapter(createClient({ url: ":memory:" })), schema });
 * ```
 */
export async function openDatabase<T extends Record<string, TableDef>>(
  options: OpenDatabaseOptions<T>,
): Promise<Database<T>> {
  const { adapter, schema } = options;
  const tables = describeTables(schema.tables);
  const stored = await migrate(adapter, schema, tables);
  const nodeId = options.nodeId ?? stored.nodeId ?? randomNodeId();
  const hlc = createHlc({ nodeId, now: options.now, maxDrift: options.maxDrift, last: stored.hlc });
  if (nodeId !== stored.nodeId) await adapter.execute(setMetaStatement("node_id", nodeId));

  const tableInfo = (name: string): TableInfo => {
    const info = tables.get(name);
    if (info === undefined) {
      throw new SyncError("unknown_table", `Unknown table ${name}`, { details: { table: name } });
    }
    return info;
  };
  const listeners = new Set<(change: DatabaseChange) => void>();
  const changed = (
    tables: readonly string[],
    source: DatabaseChange["source"],
    received?: Record<string, number>,
  ) => {
    if (tables.length === 0 || listeners.size === 0) return;
    const change: DatabaseChange = received === undefined
      ? { tables, source }
      : { tables, source, received };
    for (const listener of [...listeners]) {
      try {
        listener(change);
      } catch (error) {
        reportListenerError(error);
      }
    }
  };
  const local = (table: string) => changed([table], "local");

  const database: Database<T> = {
    ...operations<T>(adapter, tableInfo, hlc, local),
    ...outboxOperations(adapter, tables),
    ...rejectionOperations(adapter, tables, tableInfo, hlc, changed),
    schema,
    hlc,
    nodeId,
    async transaction(fn) {
      const wrote = new Set<string>();
      const result = await adapter.transaction((tx) =>
        fn(operations(tx, tableInfo, hlc, (table) => wrote.add(table), true))
      );
      changed([...wrote], "local");
      return result;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    watch(sql, args, listener, options) {
      return watchQuery(database, sql, args, listener, options);
    },
    watchAll(table, listener, options = {}) {
      const info = tableInfo(table);
      return watchReads(
        database,
        {
          read: () => database.all(table, options),
          tables: () => Promise.resolve([info.name]),
        },
        listener,
        options,
      );
    },
    async applyServerChanges(changes) {
      const { plans, newest } = planServerChanges(changes, tables);
      if (newest !== undefined) hlc.receive(newest);
      await adapter.transaction((tx) => writeServerChanges(tx, plans, hlc));
      const received: Record<string, number> = {};
      for (const plan of plans) received[plan.info.name] = plan.rows.length;
      const merged = plans.filter((plan) => plan.rows.length > 0).map((plan) => plan.info.name);
      changed(merged, "remote", received);
      return { received, newestVersion: newest };
    },
    getCursors: () => readCursors(adapter, tables),
    close: () => adapter.close(),
    [Symbol.asyncDispose]: () => adapter.close(),
  };
  return database;
}

type OutboxOperations = Pick<
  Database,
  | "getDirtyRows"
  | "getOutboxBatch"
  | "completeBatches"
  | "countDirtyRows"
  | "acknowledgeDirtyRows"
>;

// The outbox reads and acknowledgements. Every acknowledgement goes through
// the read its rows came from; `getDirtyRows` and `acknowledgeDirtyRows`, the
// seed's names, find that read from the rows they handed out.
function outboxOperations(
  adapter: SqlAdapter,
  tables: ReadonlyMap<string, TableInfo>,
): OutboxOperations {
  const reads = new OutboxReads(adapter, tables);
  const ops: OutboxOperations = {
    async getOutboxBatch({ limit, after } = {}) {
      const from = after === undefined ? undefined : reads.ofBatch("getOutboxBatch", after).end;
      const outboxRead = await reads.read("getOutboxBatch", limit, from);
      const batch: OutboxBatch = {
        rows: outboxRead.rows,
        complete: (rows) => ops.completeBatches([{ batch, rows }]),
      };
      reads.register(batch, outboxRead);
      return batch;
    },
    async completeBatches(completions) {
      await reads.acknowledge(
        completions.flatMap(({ batch, rows }) =>
          reads.ofBatch("completeBatches", batch).acknowledgeStatements(rows)
        ),
      );
    },
    async getDirtyRows({ limit, after } = {}) {
      const from = after === undefined
        ? undefined
        : reads.ofRow(after)?.positionOf(after) ?? [after.version, after.table, after.id] as const;
      return (await reads.read("getDirtyRows", limit, from)).rows;
    },
    async acknowledgeDirtyRows(rows) {
      // Rows no read of this database handed out count as one read.
      const byRead = groupBy(rows, (row) => reads.ofRow(row));
      await reads.acknowledge(
        [...byRead].flatMap(([from, acks]) =>
          from === undefined ? acknowledgeStatements(acks) : from.acknowledgeStatements(acks)
        ),
      );
    },
    countDirtyRows: () => countDirtyRows(adapter),
  };
  return ops;
}

// The reads of one database's outbox, by the batch and by the rows they
// handed out.
class OutboxReads {
  readonly #adapter: SqlAdapter;
  readonly #tables: ReadonlyMap<string, TableInfo>;
  readonly #byBatch = new WeakMap<OutboxBatch, OutboxRead>();
  readonly #byRow = new WeakMap<DirtyRowAck, OutboxRead>();

  constructor(adapter: SqlAdapter, tables: ReadonlyMap<string, TableInfo>) {
    this.#adapter = adapter;
    this.#tables = tables;
  }

  async read(method: string, limit = 1000, after?: OutboxRead["end"]): Promise<OutboxRead> {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`${method} limit must be a positive integer, got ${limit}`);
    }
    const outboxRead = await readOutbox(this.#adapter, this.#tables, limit, after);
    for (const row of outboxRead.rows) this.#byRow.set(row, outboxRead);
    return outboxRead;
  }

  register(batch: OutboxBatch, outboxRead: OutboxRead): void {
    this.#byBatch.set(batch, outboxRead);
  }

  ofBatch(method: string, batch: OutboxBatch): OutboxRead {
    const outboxRead = this.#byBatch.get(batch);
    if (outboxRead === undefined) throw new TypeError(`${method}: not a batch of this database`);
    return outboxRead;
  }

  ofRow(row: DirtyRowAck): OutboxRead | undefined {
    return this.#byRow.get(row);
  }

  async acknowledge(statements: SqlStatement[]): Promise<void> {
    if (statements.length > 0) await this.#adapter.batch(statements);
  }
}

function groupBy<T, K>(items: readonly T[], keyOf: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [item]);
    else group.push(item);
  }
  return groups;
}

type RejectionOperations = Pick<
  Database,
  | "rejectDirtyRows"
  | "getRejectedRows"
  | "countRejectedRows"
  | "retryRejectedRow"
  | "discardRejectedRow"
>;

function rejectionOperations(
  adapter: SqlAdapter,
  tables: ReadonlyMap<string, TableInfo>,
  tableInfo: (name: string) => TableInfo,
  hlc: HlcClock,
  changed: (tables: readonly string[], source: "local") => void,
): RejectionOperations {
  return {
    async rejectDirtyRows(rejections) {
      const at = new Date(hlc.wallClock()).toISOString();
      await adapter.batch(rejectStatements(rejections, at, tables));
      if (rejections.length > 0) changed([REJECTED_TABLE], "local");
    },
    getRejectedRows: () => readRejectedRows(adapter, tables),
    countRejectedRows: () => countRejectedRows(adapter),
    async retryRejectedRow(table, systemId) {
      await adapter.batch(retryRejectedStatements(tableInfo(table), systemId));
      changed([table, REJECTED_TABLE], "local");
    },
    async discardRejectedRow(table, systemId) {
      await adapter.execute(discardRejectedStatement(table, systemId));
      changed([REJECTED_TABLE], "local");
    },
  };
}

// The table refused changes are kept in, as `onChange` names it.
const REJECTED_TABLE = "_sync_rejected";

// A listener's error goes to the console: not to the write that notified it,
// and not to the runtime's uncaught-error handling (Deno's `reportError`
// ends the process).
function reportListenerError(error: unknown): void {
  console.error("A database change listener failed:", error);
}

// The typed surface is checked at the call site; inside, rows are plain records.
type Untyped = DatabaseOperations<Record<string, TableDef>>;

// Runs a write's statements, then the clock, in one batch. Outside a
// transaction the batch is atomic; inside one, a write of several statements
// (a large insertMany) runs in a savepoint, so a failure midway leaves nothing
// of it even if the caller catches the error and commits.
function writer(
  executor: SqlExecutor,
  hlc: HlcClock,
  wrote: (table: string) => void,
  inTransaction: boolean,
): (table: string, statements: SqlStatement[]) => Promise<SqlResult[]> {
  return async (table, statements) => {
    const batch = [...statements, persistClockStatement(hlc)];
    if (!inTransaction || statements.length <= 2) {
      const results = await executor.batch(batch);
      wrote(table);
      return results;
    }
    await executor.execute({ sql: "SAVEPOINT declarative_sync_write" });
    try {
      const results = await executor.batch(batch);
      await executor.execute({ sql: "RELEASE declarative_sync_write" });
      wrote(table);
      return results;
    } catch (error) {
      await executor.execute({ sql: "ROLLBACK TO declarative_sync_write" });
      await executor.execute({ sql: "RELEASE declarative_sync_write" });
      throw error;
    }
  };
}

function operations<T extends Record<string, TableDef>>(
  executor: SqlExecutor,
  tableInfo: (name: string) => TableInfo,
  hlc: HlcClock,
  wrote: (table: string) => void,
  inTransaction = false,
): DatabaseOperations<T> {
  const reads = readOperations(executor, tableInfo);
  const write = writer(executor, hlc, wrote, inTransaction);
  const ops: Untyped = {
    ...reads,
    async insert(table, values) {
      const [row] = await ops.insertMany(table, [values]);
      return row!;
    },
    async insertMany(table, values) {
      if (!Array.isArray(values)) throw new TypeError("insertMany expects an array of rows");
      if (values.length === 0) return [];
      const info = tableInfo(table);
      const prepared = prepareInsert(info, values as Record<string, unknown>[], hlc);
      await write(info.name, prepared.statements);
      return prepared.rows as never;
    },
    async update(table, systemId, patch) {
      const info = tableInfo(table);
      const statements = prepareUpdate(info, systemId, patch, hlc);
      if (statements.length === 0) {
        const row = await ops.get(table, systemId);
        if (row === undefined) throw notFound(info, systemId);
        return row;
      }
      const [result] = await write(info.name, statements);
      const row = result?.rows[0];
      if (row === undefined) throw notFound(info, systemId);
      return decodeRow(info, row) as never;
    },
    async delete(table, systemId) {
      const info = tableInfo(table);
      const [result] = await write(info.name, prepareDelete(info, systemId, hlc));
      if (result === undefined || result.rowsAffected === 0) throw notFound(info, systemId);
    },
  };
  return ops as unknown as DatabaseOperations<T>;
}

type Reads = Pick<Untyped, "get" | "all" | "query">;

function readOperations(executor: SqlExecutor, tableInfo: (name: string) => TableInfo): Reads {
  return {
    async get(table, systemId, options = {}) {
      const info = tableInfo(table);
      const hide = info.synced && !options.includeDeleted ? raw(`AND is_deleted = 0`) : empty;
      const { rows } = await executor.execute(
        sql`SELECT ${raw(info.selectList)} FROM ${id(info.name)}
          WHERE ${id(info.key)} = ${systemId} ${hide}`,
      );
      return rows[0] === undefined ? undefined : decodeRow(info, rows[0]) as never;
    },
    async all(table, options = {}) {
      const info = tableInfo(table);
      const hide = info.synced && !options.includeDeleted ? raw(`WHERE is_deleted = 0`) : empty;
      const page = options.limit === undefined && options.offset === undefined
        ? empty
        : sql`LIMIT ${nonNegative("limit", options.limit ?? -1, true)}
          OFFSET ${nonNegative("offset", options.offset ?? 0)}`;
      const { rows } = await executor.execute(
        sql`SELECT ${raw(info.selectList)} FROM ${id(info.name)} ${hide}
          ORDER BY ${id(info.key)} ${page}`,
      );
      return rows.map((row) => decodeRow(info, row)) as never;
    },
    async query(text, args = []) {
      const { rows } = await executor.execute({ sql: text, args });
      return rows;
    },
  };
}

function nonNegative(name: string, value: number, allowAll = false): number {
  if (allowAll && value === -1) return value;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

function notFound(info: TableInfo, id: string | number): SyncError {
  return new SyncError("not_found", `No row ${id} in ${info.name}`, {
    details: { table: info.name, id },
  });
}
