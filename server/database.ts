/**
 * The server's database: the same tables, HLC rules and merge code as a
 * client replica, plus the change sequence that pull cursors are made of.
 *
 * A push is applied in one write batch — one round trip to the database —
 * shared with the pushes that arrive at this instance while a write runs
 * (`group_commit.ts`). Inside it, each accepted row gets the next number of a
 * sequence stored in `_sync_meta`, counted in SQL; SQLite runs one write
 * transaction at a time per database, so sequence order is commit order, also
 * with several server instances on one database file or one sqld primary. A
 * pull page of every requested table is one read batch, which `readAdapter`
 * (a replica) may serve. A pull returns the
 * rows whose sequence is greater than the cursor, in sequence order, so no page
 * boundary can skip or repeat a committed row, whatever the clients' clocks.
 *
 * Verdicts are described where they are made, in `push.ts`.
 *
 * This module composes the parts, each in its own module: the sequence column
 * and its migration (`sequence.ts`), the push (`push.ts`), its statements
 * (`push_plan.ts`) and shared commits (`group_commit.ts`), the pull (`pull.ts`) and the scope rules both
 * follow (`scope.ts`).
 *
 * @example
 * ```ts
 * await using database = await openServerDatabase({
 *   adapter: libsqlAdapter(createClient({ url: "file:data/sync.db" })),
 *   schema,
 * });
 * const results = await database.push(changes, { principal: { id: "alice" } });
 * ```
 *
 * @module
 */

import {
  DEFAULT_MAX_DRIFT_MS,
  describeTables,
  migrate,
  type PullTableChanges,
  type PushChange,
  type PushResult,
  type Schema,
  type SqlAdapter,
  SyncError,
  type TableDef,
  type TableInfo,
} from "../src/internal.ts";
import { createChangeFeed, type Touched } from "./change_feed.ts";
import { createHeldPull, type HeldPullOptions } from "./held_pull.ts";
import { applyPush, createPushWriter, type PushOutcome } from "./push.ts";
import type { Principal } from "./scope.ts";
import { readSequenceStatement, sequenceExtension } from "./sequence.ts";

export type { HeldPullOptions } from "./held_pull.ts";
export { DEFAULT_MAX_PULL_BYTES, type PullOptions } from "./pull.ts";
export type { PushOutcome } from "./push.ts";
export type { Principal } from "./scope.ts";

/** Options of {@linkcode openServerDatabase}. */
export interface ServerDatabaseOptions<T extends Record<string, TableDef>> {
  /** The SQL engine: `libsqlAdapter(createClient({ url }))`. */
  adapter: SqlAdapter;
  /**
   * Where pulls read, when not `adapter`: a replica of the same database
   * (a sqld replica, a Turso read replica). A replica that lags behind
   * answers fewer rows, never skips one: its rows and its newest sequence
   * number come from one snapshot, and the primary commits in sequence
   * order. Closed with the database.
   */
  readAdapter?: SqlAdapter;
  /** The same schema the clients declare. */
  schema: Schema<T>;
  /** How far (ms) a change's version may be ahead of server time. Default 60 s. */
  maxDrift?: number;
  /** The server's wall clock (ms). Default `Date.now`. */
  now?: () => number;
  /**
   * `"wal"` switches a local database file to write-ahead logging: readers no
   * longer wait for the writer, and a commit costs one sync instead of a
   * journal's several (`server/main.ts` uses it for `file:` databases).
   */
  journalMode?: "wal";
  /**
   * Whether pushes that arrive while a write runs share the next one
   * (default true: `group_commit.ts`). `false` writes each push in a batch
   * of its own, at once — for a host whose requests must not wait on work
   * another request started (Cloudflare Workers cancels what a request left
   * behind when it ends; `createEdgeServer` turns it off).
   */
  groupCommit?: boolean;
  /**
   * How often (ms) the instance reads the database's change sequence while
   * pulls are held, for the changes other instances commit; and how long
   * such a read stays current for answering a pull that has nothing new
   * without reading the database (default 100). Its own commits it knows at
   * once.
   */
  watchInterval?: number;
  /**
   * Whether held pulls share one watch of the database and are woken by this
   * instance's commits (default true). `false`: each held pull polls alone,
   * touching nothing of another request — for Cloudflare Workers, where work
   * one request leaves to another is cancelled (`createEdgeServer` sets it).
   */
  sharedWatch?: boolean;
}

/** The server side of sync. */
export interface ServerDatabase {
  /** The schema served. */
  readonly schema: Schema;
  /** The server's wall clock. */
  readonly now: () => number;
  /** Applies pushed changes in one transaction; one verdict per change, in order. */
  push(changes: readonly PushChange[], options?: PushOptions): Promise<PushResult[]>;
  /**
   * {@linkcode ServerDatabase.push}, also answering which sequence numbers
   * the applied changes hold (`PushResponse.held`).
   */
  applyPush(changes: readonly PushChange[], options?: PushOptions): Promise<PushOutcome>;
  /**
   * One page per requested table: rows changed after each cursor, at most
   * `limit` each. With `wait`, a pull that has nothing new is held until a
   * change the asker may pull commits, on this instance or another, or
   * until `wait` elapses (then its pages are empty).
   */
  pull(
    cursors: Readonly<Record<string, string | null>>,
    limit: number,
    options?: HeldPullOptions,
  ): Promise<Record<string, PullTableChanges>>;
  /** The same pages as {@linkcode ServerDatabase.pull}, as the JSON text of the response's `changes`. */
  pullJson(
    cursors: Readonly<Record<string, string | null>>,
    limit: number,
    options?: HeldPullOptions,
  ): Promise<string>;
  /**
   * Answers every held pull now, with its empty pages, and holds no more:
   * call it before closing the HTTP server, which waits for the requests in
   * flight. `close()` calls it too.
   */
  endHeldPulls(): void;
  /** Ends held pulls, then closes the adapter. */
  close(): Promise<void>;
  /**
   * Closes the adapter, as {@linkcode ServerDatabase.close}: `await using
   * database = await openServerDatabase(…)` closes it when the block ends.
   */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Default of {@linkcode ServerDatabaseOptions.watchInterval}, ms. */
export const DEFAULT_WATCH_INTERVAL_MS = 100;

/** Options of {@linkcode ServerDatabase.push}. */
export interface PushOptions {
  /** Who is pushing: scoped tables accept only this principal's rows. */
  readonly principal?: Principal;
  /** Overrides the database's `maxDrift` for this push (ms). */
  readonly maxDrift?: number;
}

/**
 * Opens (creating and migrating) the server's database.
 *
 * @example
 * ```ts
 * const database = await openServerDatabase({
 *   adapter: libsqlAdapter(createClient({ url: "file:data/sync.db" })),
 *   schema,
 * });
 * ```
 */
export async function openServerDatabase<T extends Record<string, TableDef>>(
  options: ServerDatabaseOptions<T>,
): Promise<ServerDatabase> {
  const { adapter, schema } = options;
  const now = options.now ?? Date.now;
  const defaultMaxDrift = options.maxDrift ?? DEFAULT_MAX_DRIFT_MS;
  const tables = describeTables(schema.tables);
  const reads = options.readAdapter ?? adapter;
  const writes = createPushWriter(adapter, { group: options.groupCommit ?? true });
  if (options.journalMode === "wal") await useWal(adapter);
  await migrate(adapter, schema, tables, sequenceExtension);

  const interval = options.watchInterval ?? DEFAULT_WATCH_INTERVAL_MS;
  const feed = createChangeFeed({
    read: async () => Number((await reads.execute(readSequenceStatement)).rows[0]?.sequence ?? 0),
    interval,
    shared: options.sharedWatch ?? true,
  });
  const pull = createHeldPull({
    reads,
    tables,
    feed,
    interval,
    now: Date.now,
    readFailed: reads === adapter ? undefined : replicaNotReady,
  });
  const close = async () => {
    feed.end();
    await adapter.close();
    if (reads !== adapter) await reads.close();
  };
  const push = async (
    changes: readonly PushChange[],
    { principal, maxDrift = defaultMaxDrift }: PushOptions = {},
  ) => {
    const outcome = await applyPush(writes, adapter, tables, changes, {
      principal,
      maxDrift,
      serverTime: now(),
    });
    // What this push gave out is known at once: it wakes the pulls it concerns.
    const last = Math.max(0, ...outcome.held.map(([, end]) => end));
    if (last > 0) feed.committed(last, touchedBy(tables, changes, outcome.results));
    return outcome;
  };
  return {
    schema,
    now,
    applyPush: push,
    push: async (changes, options) => (await push(changes, options)).results,
    pullJson: pull,
    pull: async (cursors, limit, options) => JSON.parse(await pull(cursors, limit, options)),
    endHeldPulls: () => feed.end(),
    close,
    [Symbol.asyncDispose]: close,
  };
}

// The tables the applied changes wrote, with the scope values of their rows
// (a change that does not carry its scope column makes its table's scopes unknown).
function touchedBy(
  tables: ReadonlyMap<string, TableInfo>,
  changes: readonly PushChange[],
  results: readonly PushResult[],
): Touched {
  const touched = new Map<string, Set<string> | undefined>();
  changes.forEach((change, i) => {
    if (results[i]?.status !== "applied") return;
    const column = tables.get(change.table)?.def.scope;
    const value = column === undefined
      ? undefined
      : (change.data as Record<string, unknown> | undefined)?.[column];
    if (typeof value !== "string") {
      touched.set(change.table, undefined);
      return;
    }
    if (touched.has(change.table) && touched.get(change.table) === undefined) return;
    touched.set(change.table, (touched.get(change.table) ?? new Set<string>()).add(value));
  });
  return touched;
}

// A replica that has not received the migration yet has no such table (or
// column): a passing state, answered 503 so that clients retry, not a 500.
function replicaNotReady(error: unknown): never {
  if (/no such (table|column)/i.test(String((error as Error)?.message))) {
    throw new SyncError("unavailable", "The replica pulls are read from is not ready yet", {
      cause: error,
    });
  }
  throw error;
}

// Switches the file to write-ahead logging. Another process opening the file
// at the same moment may hold it for a moment (SQLite then answers BUSY at
// once, without waiting): try again for up to about five seconds, unless that
// process has switched it already.
async function useWal(adapter: SqlAdapter): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      await adapter.execute({ sql: "PRAGMA journal_mode = WAL" });
      return;
    } catch (error) {
      const busy = /SQLITE_BUSY|database is locked/i.test(String((error as Error)?.message));
      if (!busy || attempt >= 50) throw error;
    }
    const { rows: [mode] } = await adapter.execute({ sql: "PRAGMA journal_mode" });
    if (String(Object.values(mode ?? {})[0]).toLowerCase() === "wal") return;
    await new Promise((resolve) => setTimeout(resolve, 20 + attempt * 4));
  }
}
