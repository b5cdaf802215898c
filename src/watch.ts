/**
 * Live queries: a query's rows now, and again after every committed change
 * to a table it reads (`db.watch`).
 *
 * Which tables a query reads comes from SQLite itself, not from parsing the
 * SQL: `EXPLAIN` lists the b-trees the query's program opens (`OpenRead`,
 * with their root pages), and `sqlite_schema` names the table each root page
 * belongs to (an index belongs to its table). Views and joins resolve to the
 * tables under them. `options.tables` overrides it.
 *
 * Re-runs coalesce: at most one runs at a time, and changes that arrive
 * while it runs lead to one more run after it, so the listener never sees an
 * older state after a newer one. Re-runs are also throttled, as PowerSync's
 * `watch` throttles: a database's watches re-run in rounds, at least
 * `throttle` (30 ms) apart (`watch_rounds.ts`); the first change after a
 * quiet moment re-runs at once, the changes of a burst share one re-run,
 * and 100 watchers take a bounded share of a busy writer's database rather
 * than 100 queries after every write. A listener that throws is reported and keeps watching; a query that
 * fails is reported to `options.onError` (else the console) and is run
 * again at the next change. A watch ends when its database is closed.
 *
 * @example
 * ```ts
 * const stop = watchQuery(db, "SELECT * FROM tasks WHERE done = ?", [0], (rows) => render(rows));
 * await db.insert("tasks", { title: "New" }); // render runs again with the new row
 * stop();
 * ```
 *
 * @module
 */

import type { SqlValue } from "./adapter.ts";
import { SyncError } from "./errors.ts";
import { type RoundMember, watchRounds } from "./watch_rounds.ts";

/** Options of a watch. */
export interface WatchOptions {
  /** The tables whose changes re-run the query, instead of those SQLite says it reads. */
  readonly tables?: readonly string[];
  /** Called when the query fails (default: the console); the watch goes on. */
  readonly onError?: (error: unknown) => void;
  /**
   * The least time (ms) from the end of the database's last round of
   * re-runs to the round that re-runs this watch (default 30). The first
   * change after a quiet moment re-runs at once; the changes of a burst
   * then share one re-run, and the watches of a database re-run together,
   * leaving a writer the database in between (`watch_rounds.ts`). 0 re-runs
   * as soon as the last round ended.
   */
  readonly throttle?: number;
}

/** Default of {@linkcode WatchOptions.throttle}, ms. */
export const DEFAULT_WATCH_THROTTLE_MS = 30;

/** What a watch needs of a database: its queries and its change events. */
export interface Watchable {
  /** Runs a query. */
  query(sql: string, args?: readonly SqlValue[]): Promise<Record<string, unknown>[]>;
  /** Subscribes to committed changes; returns the unsubscribe function. */
  onChange(listener: (change: { readonly tables: readonly string[] }) => void): () => void;
}

/**
 * The tables `sql` reads, as SQLite's plan of it opens them.
 *
 * @example
 * ```ts
 * await tablesRead(db, "SELECT * FROM open_tasks JOIN notes USING (system_id)"); // ["notes", "tasks"]
 * ```
 */
export async function tablesRead(
  db: Pick<Watchable, "query">,
  sql: string,
  args: readonly SqlValue[] = [],
): Promise<string[]> {
  const [plan, schema] = await Promise.all([
    db.query(`EXPLAIN ${sql}`, args),
    db.query(`SELECT tbl_name, rootpage FROM sqlite_schema WHERE rootpage > 0`),
  ]);
  const tableOfPage = new Map(schema.map((row) => [Number(row.rootpage), String(row.tbl_name)]));
  const tables = new Set<string>();
  for (const step of plan) {
    // p2: the root page; p3: the database (0 = main).
    if (step.opcode !== "OpenRead" || Number(step.p3) !== 0) continue;
    const table = tableOfPage.get(Number(step.p2));
    if (table !== undefined) tables.add(table);
  }
  return [...tables].sort();
}

/**
 * Calls `listener` with the rows of `sql` now, and again after every
 * committed change to a table it reads. Returns the function that stops it.
 */
export function watchQuery<R = Record<string, unknown>>(
  db: Watchable,
  sql: string,
  args: readonly SqlValue[],
  listener: (rows: R[]) => void,
  options: WatchOptions = {},
): () => void {
  return watchReads(
    db,
    {
      read: async () => await db.query(sql, args) as R[],
      tables: async () => options.tables ?? await tablesRead(db, sql, args),
    },
    listener,
    options,
  );
}

/** What a watch reads, and the tables whose changes re-run it. */
export interface WatchedRead<R> {
  /** Reads the rows. */
  read(): Promise<R[]>;
  /** The tables it reads (asked once). */
  tables(): Promise<readonly string[]>;
}

/**
 * Calls `listener` with what `watched.read()` gives now, and again after
 * every committed change to one of `watched.tables()`. Returns the function
 * that stops it.
 */
export function watchReads<R>(
  db: Pick<Watchable, "onChange">,
  watched: WatchedRead<R>,
  listener: (rows: R[]) => void,
  options: Pick<WatchOptions, "onError" | "throttle"> = {},
): () => void {
  const onError = options.onError ??
    ((error: unknown) => console.error("A watched query failed:", error));
  const rounds = watchRounds(db);
  let stopped = false;
  let running = false;
  // A change came while a run was going on: the run after it shows it.
  let again = false;
  let tables: ReadonlySet<string> | undefined;

  const run = async (): Promise<void> => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      tables ??= new Set(await watched.tables());
      const rows = await watched.read();
      if (stopped) return;
      try {
        listener(rows);
      } catch (error) {
        console.error("A watch listener failed:", error);
      }
    } catch (error) {
      // A watch ends with its database: a query after `close()` fails so.
      if (error instanceof SyncError && error.code === "closed") stop();
      else if (!stopped) onError(error);
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      rounds.request(member);
    }
  };
  const member: RoundMember = {
    throttle: Math.max(0, options.throttle ?? DEFAULT_WATCH_THROTTLE_MS),
    run,
  };

  const unsubscribe = db.onChange((change) => {
    if (stopped) return;
    // Before the tables are known, every change re-runs: the run in flight may predate it.
    if (tables === undefined || change.tables.some((table) => tables!.has(table))) {
      rounds.request(member);
    }
  });
  const stop = () => {
    stopped = true;
    rounds.remove(member);
    unsubscribe();
  };
  void run();
  return stop;
}
