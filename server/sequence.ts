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
 * @example
 * ```ts
 * await migrate(adapter, schema, tables, sequenceExtension);
 * await adapter.transaction(async (tx) => {
 *   const last = await readSequence(tx);
 *   // … rows written with numbers last + 1, last + 2 …
 *   await tx.execute(storeSequenceStatement(last + 2));
 * });
 * ```
 *
 * @module
 */

import {
  empty,
  id,
  type MigrationExtension,
  raw,
  readMetaValue,
  setMetaStatement,
  type Sql,
  sql,
  type SqlExecutor,
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

/** The last sequence number given out (0 for a new database). */
export async function readSequence(executor: SqlExecutor): Promise<number> {
  const value = await readMetaValue(executor, SEQUENCE_KEY);
  return value === undefined ? 0 : Number(value);
}

/** The statement storing `last` as the last sequence number given out. */
export function storeSequenceStatement(last: number): SqlStatement {
  return setMetaStatement(SEQUENCE_KEY, String(last));
}
