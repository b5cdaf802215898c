/**
 * `_sync_meta`: the database's own facts, one key per row — the node id,
 * the last HLC issued or received, the schema hash of the last migration,
 * and what a role keeps besides (the server's change sequence).
 *
 * Every statement that reads or writes the table is here.
 *
 * @module
 */

import type { SqlExecutor, SqlStatement } from "./adapter.ts";
import type { HlcClock } from "./hlc.ts";
import { sql } from "./sql.ts";

/** The DDL of `_sync_meta`. */
export const META_TABLE_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS _sync_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)`,
];

/** What `_sync_meta` held when the database was opened. */
export interface StoredMeta {
  /** Node id, if one was stored. */
  readonly nodeId: string | undefined;
  /** Last HLC issued or received, if stored. */
  readonly hlc: string | undefined;
}

/** Every key and value, or `undefined` before the table exists (a new database). */
export async function readMeta(executor: SqlExecutor): Promise<Map<string, string> | undefined> {
  const found = await executor.execute({
    sql: `SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sync_meta'`,
  });
  if (found.rows.length === 0) return undefined;
  const { rows } = await executor.execute({ sql: `SELECT key, value FROM _sync_meta` });
  return new Map(rows.map((row) => [String(row.key), String(row.value)]));
}

/** The value of one key, or `undefined`. */
export async function readMetaValue(
  executor: SqlExecutor,
  key: string,
): Promise<string | undefined> {
  const { rows } = await executor.execute(sql`SELECT value FROM _sync_meta WHERE key = ${key}`);
  return rows[0] === undefined ? undefined : String(rows[0].value);
}

/** Sets one key. */
export function setMetaStatement(key: string, value: string): SqlStatement {
  return sql`INSERT INTO _sync_meta (key, value) VALUES (${key}, ${value})
    ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
}

/** Persists the clock so a reopen continues after every version this database has seen. */
export function persistClockStatement(hlc: HlcClock): SqlStatement {
  return sql`INSERT INTO _sync_meta (key, value) VALUES ('hlc', ${hlc.last})
    ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE excluded.value > _sync_meta.value`;
}
