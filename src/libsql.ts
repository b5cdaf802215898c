/**
 * The libSQL adapter: wraps any `@libsql/client` client — an embedded `file:`
 * database, `:memory:`, an embedded replica (`syncUrl`) or a remote libSQL /
 * Turso primary — as a {@linkcode SqlAdapter}. It is the only module of the core
 * that touches `@libsql/client`.
 *
 * Operations run one at a time, in call order. A local libSQL client does its
 * work synchronously, so nothing is lost by it; it is what makes an interactive
 * transaction safe on a single-connection client (`:memory:`, embedded
 * replicas) and keeps the outbox consistent with the rows it describes. The
 * one exception is a `"read"` batch on a remote client (`http:`, `ws:`,
 * `libsql:`): it runs at once, beside the writes, in its own request, and
 * the database gives it its own snapshot — so the pulls an endpoint serves
 * do not wait behind its pushes. Use one adapter per client; a process that
 * needs parallel local readers opens more clients.
 *
 * @example
 * ```ts
 * import { createClient } from "@libsql/client";
 * import { libsqlAdapter } from "@declarative/sync/libsql";
 * import { openDatabase } from "@declarative/sync";
 *
 * const db = await openDatabase({
 *   adapter: libsqlAdapter(createClient({ url: "file:app.db" })),
 *   schema,
 * });
 * ```
 *
 * @module
 */

import type {
  BatchMode,
  SqlAdapter,
  SqlExecutor,
  SqlResult,
  SqlStatement,
  SqlValue,
} from "./adapter.ts";
import { SyncError } from "./errors.ts";

export type {
  BatchMode,
  SqlAdapter,
  SqlExecutor,
  SqlResult,
  SqlStatement,
  SqlValue,
} from "./adapter.ts";

/** A statement as `@libsql/client` takes it. */
export interface LibsqlStatement {
  /** The SQL text. */
  sql: string;
  /** Positional arguments. */
  args: SqlValue[];
}

/** A result as `@libsql/client` returns it (the parts the adapter reads). */
export interface LibsqlResult {
  /** Column names, in order. */
  readonly columns: readonly string[];
  /** Rows, each indexed by column position. */
  readonly rows: readonly ArrayLike<unknown>[];
  /** Rows inserted, updated or deleted. */
  readonly rowsAffected: number;
}

/** An interactive transaction of `@libsql/client` (the parts the adapter uses). */
export interface LibsqlTransaction {
  /** Runs one statement in the transaction. */
  execute(statement: LibsqlStatement): Promise<LibsqlResult>;
  /** Runs statements in order in the transaction. */
  batch(statements: LibsqlStatement[]): Promise<LibsqlResult[]>;
  /** Commits. */
  commit(): Promise<void>;
  /** Rolls back. */
  rollback(): Promise<void>;
  /** Releases the transaction. */
  close(): void;
}

/**
 * What the adapter needs of a `@libsql/client` client: any `createClient`
 * result fits (`@libsql/client`, `@libsql/client/web`, any URL scheme).
 */
export interface LibsqlClient {
  /** How the client reaches its database: `"file"` for a local one, else `"http"`, `"ws"`, … */
  readonly protocol?: string;
  /** Runs one statement. */
  execute(statement: LibsqlStatement): Promise<LibsqlResult>;
  /** Runs statements in order in one implicit transaction. */
  batch(statements: LibsqlStatement[], mode: "write" | "read"): Promise<LibsqlResult[]>;
  /** Opens an interactive transaction. */
  transaction(mode: "write"): Promise<LibsqlTransaction>;
  /** Closes the client. */
  close(): void;
}

/**
 * Wraps a `@libsql/client` client as a {@linkcode SqlAdapter}.
 *
 * @param client a client from `createClient` (any URL scheme)
 * @returns the adapter; closing it closes the client
 */
export function libsqlAdapter(client: LibsqlClient): SqlAdapter {
  let tail: Promise<unknown> = Promise.resolve();
  let closed = false;
  const remote = client.protocol !== undefined && client.protocol !== "file";

  // Runs `op` after every operation queued before it, whatever their outcome.
  const serialize = <T>(op: () => Promise<T>): Promise<T> => {
    const run = tail.then(() => {
      if (closed) throw new SyncError("closed", "The database is closed");
      return op();
    });
    tail = run.catch(() => undefined);
    return run;
  };

  return {
    execute: (statement) => serialize(() => execute(client, statement)),
    batch: (statements, mode = "write") =>
      mode === "read" && remote
        ? closed
          ? Promise.reject(new SyncError("closed", "The database is closed"))
          : batch(client, statements, mode)
        : serialize(() => batch(client, statements, mode)),
    transaction: <T>(fn: (tx: SqlExecutor) => Promise<T>) =>
      serialize(async () => {
        const tx = await client.transaction("write").catch(rethrow);
        const scope = transactionScope(tx);
        try {
          const result = await fn(scope.executor);
          scope.end();
          await tx.commit().catch(rethrow);
          return result;
        } catch (error) {
          scope.end();
          await tx.rollback().catch(() => undefined);
          throw error;
        } finally {
          tx.close();
        }
      }),
    close: () =>
      serialize(() => {
        closed = true;
        client.close();
        return Promise.resolve();
      }),
  };
}

// An executor bound to `tx` that refuses calls once the transaction has ended:
// a late call would otherwise run outside of it.
function transactionScope(tx: LibsqlTransaction): { executor: SqlExecutor; end(): void } {
  let ended = false;
  const guard = <T>(op: () => Promise<T>): Promise<T> =>
    ended ? Promise.reject(new SyncError("closed", "The transaction has ended")) : op();
  return {
    executor: {
      execute: (statement) => guard(() => execute(tx, statement)),
      batch: (statements) =>
        guard(async () => {
          if (statements.length === 0) return [];
          const results = await tx.batch(statements.map(toLibsql)).catch(rethrow);
          return results.map(fromLibsql);
        }),
    },
    end: () => {
      ended = true;
    },
  };
}

async function execute(
  target: Pick<LibsqlClient, "execute">,
  statement: SqlStatement,
): Promise<SqlResult> {
  const result = await target.execute(toLibsql(statement)).catch(rethrow);
  return fromLibsql(result);
}

async function batch(
  client: LibsqlClient,
  statements: readonly SqlStatement[],
  mode: BatchMode,
): Promise<SqlResult[]> {
  if (statements.length === 0) return [];
  const results = await client.batch(statements.map(toLibsql), mode).catch(rethrow);
  return results.map(fromLibsql);
}

function toLibsql(statement: SqlStatement): LibsqlStatement {
  return { sql: statement.sql, args: (statement.args ?? []) as SqlValue[] };
}

function fromLibsql(result: LibsqlResult): SqlResult {
  const { columns } = result;
  const rows = new Array<Record<string, SqlValue>>(result.rows.length);
  for (let r = 0; r < result.rows.length; r++) {
    const source = result.rows[r]!;
    const row: Record<string, SqlValue> = {};
    for (let c = 0; c < columns.length; c++) {
      const value = source[c] as SqlValue;
      row[columns[c]!] = value instanceof ArrayBuffer ? new Uint8Array(value) : value;
    }
    rows[r] = row;
  }
  return { rows, rowsAffected: result.rowsAffected };
}

// libSQL reports constraint failures as SQLITE_CONSTRAINT_* codes; they are the
// caller's to handle, so they become a typed SyncError. Anything else is an
// operational failure and keeps its original error.
function rethrow(error: unknown): never {
  const code = (error as { code?: unknown })?.code;
  const extended = (error as { extendedCode?: unknown })?.extendedCode;
  if (
    (typeof code === "string" && code.includes("CONSTRAINT")) ||
    (typeof extended === "string" && extended.includes("CONSTRAINT"))
  ) {
    throw new SyncError("constraint", (error as Error).message, { cause: error });
  }
  throw error;
}
