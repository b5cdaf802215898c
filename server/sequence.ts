/**
 * The server's change sequence: a number assigned inside the write
 * transaction that accepted a change, increasing with commit order. Every
 * synced table of the server carries it in {@linkcode SEQUENCE_COLUMN}, and
 * pull cursors are these numbers, so a pull never skips a committed change.
 *
 * The core knows nothing of it: the server brings the column and its index
 * to the migration as a {@linkcode MigrationExtension}, and keeps the last
 * number given out in `_sync_meta` under the key `sequence`.
 *
 * Numbers are counted inside SQL, so a write needs no read first: an UPSERT
 * numbers its rows from {@linkcode SEQUENCE_BASE} on, and the statement after
 * it moves the sequence past them if it wrote any
 * ({@linkcode advanceSequenceStatement}). Numbers of rows that were not
 * written (stale changes) are then held by no row: gaps, which pulls do not
 * mind. A write that wrote nothing leaves the sequence where it was.
 *
 * @example
 * ```ts
 * await migrate(adapter, schema, tables, sequenceExtension);
 * await adapter.batch([
 *   upsertStatement(info, columns, rows, { stamp: { column: SEQUENCE_COLUMN, base: SEQUENCE_BASE } }),
 *   advanceSequenceStatement(rows.length),
 * ]);
 * ```
 *
 * @module
 */

import {
  empty,
  id,
  type MigrationExtension,
  raw,
  type Sql,
  sql,
  type SqlStatement,
  type TableInfo,
} from "../src/internal.ts";

/** The column holding a row's sequence number: the number of the change it holds. */
export const SEQUENCE_COLUMN = "system_seq";

/** {@linkcode SEQUENCE_COLUMN} as SQL, for the server's statements. */
export const seq: Sql = raw(SEQUENCE_COLUMN);

// The key of the last number given out in `_sync_meta`.
const SEQUENCE_KEY = "sequence";

/**
 * What the server adds to the declared tables: the sequence column on every
 * synced table, and the index pulls walk (per scope, where the table has one).
 * Its name makes the stored schema hash `<hash>/server`, which is what server
 * files have always stored, so they open without migrating.
 */
export const sequenceExtension: MigrationExtension = {
  name: "server",
  columns: () => [{ name: SEQUENCE_COLUMN, definition: "INTEGER" }],
  statements: (info: TableInfo): SqlStatement[] => {
    const scope = info.def.scope === undefined ? empty : sql`${id(info.def.scope)}, `;
    const index = id(`${info.name}_${SEQUENCE_COLUMN}_idx`);
    return [sql`CREATE INDEX IF NOT EXISTS ${index} ON ${id(info.name)} (${scope}${seq})`];
  },
};

/**
 * The last sequence number given out, as a SQL expression (a scalar
 * subquery; 0 before the first).
 */
export const SEQUENCE_BASE =
  `coalesce((SELECT CAST(value AS INTEGER) FROM _sync_meta WHERE key = '${SEQUENCE_KEY}'), 0)`;

/**
 * Moves the sequence `count` numbers on, if the statement right before it
 * changed any row (`changes()`, read before this one changes anything): it
 * follows an UPSERT of `count` rows numbered from {@linkcode SEQUENCE_BASE}.
 */
export function advanceSequenceStatement(count: number): SqlStatement {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new RangeError(`A sequence advances by a positive integer, got ${count}`);
  }
  // The count is written into the SQL: a bound JavaScript number is a real,
  // and the stored value would read "5.0".
  return {
    sql: `INSERT INTO _sync_meta (key, value) SELECT '${SEQUENCE_KEY}', ${count}
    WHERE changes() > 0 ON CONFLICT (key) DO UPDATE
    SET value = CAST(_sync_meta.value AS INTEGER) + ${count}`,
  };
}

/** Reads the last sequence number given out (column `sequence`; 0 before the first). */
export const readSequenceStatement: SqlStatement = { sql: `SELECT ${SEQUENCE_BASE} AS sequence` };
