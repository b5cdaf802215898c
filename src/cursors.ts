/**
 * `_sync_cursors`: per synced table, the last cursor a pull returned (the
 * seed's `tableTimestamps`), stored as JSON in the transaction that merged
 * the page it came with.
 *
 * @module
 */

import type { SqlExecutor, SqlStatement } from "./adapter.ts";
import { sql } from "./sql.ts";
import type { TableInfo } from "./table_info.ts";

/** The DDL of `_sync_cursors`. */
export const CURSORS_TABLE_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS _sync_cursors (table_name TEXT PRIMARY KEY NOT NULL, cursor TEXT)`,
];

/** Stores the cursor of one table. */
export function storeCursorStatement(table: string, cursor: unknown): SqlStatement {
  return sql`INSERT INTO _sync_cursors (table_name, cursor) VALUES (${table}, ${
    JSON.stringify(cursor)
  }) ON CONFLICT (table_name) DO UPDATE SET cursor = excluded.cursor`;
}

/** The stored cursor of every synced table, `null` before its first pull. */
export async function readCursors(
  executor: SqlExecutor,
  tables: ReadonlyMap<string, TableInfo>,
): Promise<Record<string, unknown>> {
  const { rows } = await executor.execute({ sql: `SELECT table_name, cursor FROM _sync_cursors` });
  const stored = new Map(rows.map((row) => [String(row.table_name), row.cursor]));
  const cursors: Record<string, unknown> = {};
  for (const info of tables.values()) {
    if (!info.synced) continue;
    const cursor = stored.get(info.name);
    cursors[info.name] = typeof cursor === "string" ? JSON.parse(cursor) : null;
  }
  return cursors;
}
