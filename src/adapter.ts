/**
 * The adapter interface: the one seam between the sync core and a SQL engine.
 *
 * The core speaks only to this interface, so the same code runs on a device
 * against an embedded libSQL file and on the server at the edge against a
 * remote primary. It is deliberately small: statements with positional
 * arguments, an atomic batch (one round trip), and an interactive transaction.
 *
 * Contract (checked for every adapter by `runAdapterConformance` in
 * `tests/adapter_conformance.ts`, which each adapter's test calls):
 * - `execute` runs one statement and returns its rows as plain objects keyed by
 *   column name, and the number of rows it changed.
 * - `batch` runs its statements in order inside one transaction: all commit or
 *   none do. Statements may use `RETURNING`; each result is returned. With
 *   `"read"` the statements only read, from one snapshot: a local database
 *   does not take the write lock for them, and a replica answers them itself
 *   instead of forwarding them to its primary. One batch is one round trip
 *   to a remote database.
 * - `transaction(fn)` runs `fn` with an executor bound to one open write
 *   transaction; it commits when `fn` resolves and rolls back when it throws.
 *   Nothing else runs on the adapter meanwhile: operations are serialized, so
 *   a transaction never sees another caller's half-done work.
 * - `close` releases the connection; later calls reject.
 *
 * @example
 * ```ts
 * import { createClient } from "@libsql/client";
 * import { libsqlAdapter } from "@declarative/sync/libsql";
 * const adapter: SqlAdapter = libsqlAdapter(createClient({ url: "file:app.db" }));
 * await adapter.batch([{ sql: "INSERT INTO t VALUES (?)", args: [1] }]);
 * ```
 *
 * @module
 */

/** A value bound to or read from SQL. */
export type SqlValue = null | string | number | bigint | boolean | Uint8Array | ArrayBuffer;

/** One statement with positional (`?`) arguments. */
export interface SqlStatement {
  /** The SQL text. Identifiers come from the schema; values are always arguments. */
  readonly sql: string;
  /** Positional arguments. */
  readonly args?: readonly SqlValue[];
}

/** The result of one statement. */
export interface SqlResult {
  /** Rows as plain objects keyed by column name. */
  readonly rows: Record<string, SqlValue>[];
  /** Rows inserted, updated or deleted. */
  readonly rowsAffected: number;
}

/**
 * What a batch does: `"write"` (the default) takes the write lock; `"read"`
 * only reads, from one snapshot.
 */
export type BatchMode = "write" | "read";

/** Runs statements; inside a transaction, on its connection. */
export interface SqlExecutor {
  /** Runs one statement. */
  execute(statement: SqlStatement): Promise<SqlResult>;
  /**
   * Runs statements in order; inside a transaction they join it (and `mode`
   * does not matter), outside they form their own, of `mode` (default
   * `"write"`). An adapter that has no read transactions may run a `"read"`
   * batch as a write.
   */
  batch(statements: readonly SqlStatement[], mode?: BatchMode): Promise<SqlResult[]>;
}

/** A SQL engine the core can run on. */
export interface SqlAdapter extends SqlExecutor {
  /** Runs `fn` inside one write transaction: commit on resolve, rollback on throw. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Closes the underlying connection. */
  close(): Promise<void>;
}
