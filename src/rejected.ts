/**
 * `_sync_rejected`: the changes the server refused, each kept with the
 * server's code and message, so nothing is dropped silently. A row has at
 * most one rejection (the newest); retrying puts it back in the outbox.
 *
 * Entries the client cannot send at all (a row removed outside the API, a
 * table no longer synced, an id the server would refuse) are set aside here
 * too, with a code of their own, so they never hold an outbox slot.
 *
 * Every statement that reads or writes the table is here.
 *
 * @module
 */

import type { SqlExecutor, SqlStatement } from "./adapter.ts";
import type { DirtyRow } from "./outbox.ts";
import { id, raw, sql } from "./sql.ts";
import type { TableInfo } from "./table_info.ts";
import type { RejectionCode } from "./wire_errors.ts";
import { dataFromWire, dataToWire } from "./wire.ts";

/** The DDL of `_sync_rejected`. */
export const REJECTED_TABLE_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS _sync_rejected (table_name TEXT NOT NULL, row_id TEXT NOT NULL, ` +
  `version TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL, change TEXT NOT NULL, ` +
  `rejected_at TEXT NOT NULL, PRIMARY KEY (table_name, row_id)) WITHOUT ROWID`,
];

/** A change the server refused, kept with the reason (`_sync_rejected`). */
export interface RejectedRow {
  /** Table name. */
  readonly table: string;
  /** The row's `system_id`. */
  readonly id: string;
  /** The version that was refused. */
  readonly version: string;
  /** The server's code (`forbidden`, `clock_drift`, `constraint` …). */
  readonly code: RejectionCode;
  /** The server's message. */
  readonly message: string;
  /** When it was refused (ISO 8601). */
  readonly rejectedAt: string;
  /** The change as it was sent. */
  readonly change: DirtyRow;
}

/** A refused change and the server's reason, for {@linkcode rejectStatements}. */
export interface Rejection {
  /** The change as it was sent. */
  readonly change: DirtyRow;
  /** The server's code. */
  readonly code: RejectionCode;
  /** The server's message. */
  readonly message: string;
}

// A row keeps one rejection: the newest.
const keepNewest = raw(
  `ON CONFLICT (table_name, row_id) DO UPDATE SET version = excluded.version, ` +
    `code = excluded.code, message = excluded.message, change = excluded.change, ` +
    `rejected_at = excluded.rejected_at`,
);

/**
 * Moves refused changes from the outbox to `_sync_rejected`, each only while
 * its entry still holds the refused version or an older one (a newer local
 * write stays in the outbox and is sent again).
 */
export function rejectStatements(
  rejections: readonly Rejection[],
  at: string,
  tables: ReadonlyMap<string, TableInfo>,
): SqlStatement[] {
  const statements: SqlStatement[] = [];
  for (const { change, code, message } of rejections) {
    const info = tables.get(change.table);
    // Stored as JSON: blobs as base64, as on the wire.
    const stored = info === undefined ? change : { ...change, data: dataToWire(info, change.data) };
    const { table, id: rowId, version } = change;
    statements.push(
      sql`INSERT INTO _sync_rejected
        (table_name, row_id, version, code, message, change, rejected_at)
        SELECT ${table}, ${rowId}, ${version}, ${code}, ${message}, ${JSON.stringify(stored)}, ${at}
        WHERE EXISTS (SELECT 1 FROM _dirty_rows
          WHERE table_name = ${table} AND row_id = ${rowId} AND version <= ${version})
        ${keepNewest}`,
      sql`DELETE FROM _dirty_rows
        WHERE table_name = ${table} AND row_id = ${rowId} AND version <= ${version}`,
    );
  }
  return statements;
}

/**
 * Sets outbox entries that cannot be sent aside, with the reason: a
 * rejection the client gives itself, at the entry's version, with no data.
 */
export function setAsideStatements(
  table: string,
  ids: readonly string[],
  code: RejectionCode,
  message: string,
): SqlStatement[] {
  const which = sql`FROM _dirty_rows
    WHERE table_name = ${table} AND row_id IN (SELECT value FROM json_each(${
    JSON.stringify(ids)
  }))`;
  return [
    sql`INSERT INTO _sync_rejected
      (table_name, row_id, version, code, message, change, rejected_at)
      SELECT table_name, row_id, version, ${code}, ${message}, json_object('table', table_name,
        'id', row_id, 'version', version, 'deleted', json('false'), 'data', json('{}')),
        strftime('%Y-%m-%dT%H:%M:%fZ', 'now') ${which}
      ${keepNewest}`,
    sql`DELETE ${which}`,
  ];
}

/** Reads `_sync_rejected`, oldest first. */
export async function readRejectedRows(
  executor: SqlExecutor,
  tables: ReadonlyMap<string, TableInfo>,
): Promise<RejectedRow[]> {
  const { rows } = await executor.execute({
    sql: `SELECT table_name, row_id, version, code, message, change, rejected_at ` +
      `FROM _sync_rejected ORDER BY rejected_at, table_name, row_id`,
  });
  return rows.map((row) => {
    const change = JSON.parse(String(row.change)) as DirtyRow;
    const info = tables.get(change.table);
    return {
      table: String(row.table_name),
      id: String(row.row_id),
      version: String(row.version),
      code: String(row.code) as RejectionCode,
      message: String(row.message),
      rejectedAt: String(row.rejected_at),
      change: info === undefined ? change : { ...change, data: dataFromWire(info, change.data) },
    };
  });
}

/** Counts the kept rejections. */
export async function countRejectedRows(executor: SqlExecutor): Promise<number> {
  const { rows } = await executor.execute({ sql: `SELECT count(*) AS n FROM _sync_rejected` });
  return Number(rows[0]?.n ?? 0);
}

/** Puts a rejected row back in the outbox at its current version and forgets the rejection. */
export function retryRejectedStatements(info: TableInfo, rowId: string): SqlStatement[] {
  return [
    sql`INSERT INTO _dirty_rows (table_name, row_id, version)
      SELECT ${info.name}, system_id, system_version FROM ${id(info.name)}
      WHERE system_id = ${rowId}
      ON CONFLICT (table_name, row_id) DO UPDATE SET version = excluded.version`,
    discardRejectedStatement(info.name, rowId),
  ];
}

/** Forgets a rejection; the local row stays as it is. */
export function discardRejectedStatement(table: string, rowId: string): SqlStatement {
  return sql`DELETE FROM _sync_rejected WHERE table_name = ${table} AND row_id = ${rowId}`;
}
