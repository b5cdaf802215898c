/**
 * The outbox (`_dirty_rows`): one entry per locally changed row of a synced
 * table, holding the version of its last local write.
 *
 * - Coalesced: a row written five times offline has one entry, at its latest
 *   version; the row itself is read when the outbox is, so it is sent once, as
 *   it is now.
 * - Atomic with the write: the entry is recorded by a statement of the same
 *   batch or transaction as the row (see `writes.ts`).
 * - Acknowledged by version: an entry is removed only if its version is not
 *   newer than the version that was sent. A write made while a send was in
 *   flight has a newer version (the HLC never goes backwards), so it survives
 *   and is sent next time.
 *
 * A `DirtyRow` carries the row's current `system_version` and data, read in one
 * statement, so version and data always match; for `lww: "column"` tables it
 * also carries the per-column versions.
 *
 * @module
 */

import type { SqlExecutor, SqlStatement, SqlValue } from "./adapter.ts";
import { COLUMN_VERSIONS } from "./schema.ts";
import { decodeValue, quoteId, type TableInfo } from "./table_info.ts";

/** A change waiting in the outbox: the push change shape of the wire protocol. */
export interface DirtyRow {
  /** Table name. */
  readonly table: string;
  /** The row's `system_id`. */
  readonly id: string;
  /** The row's `system_version`: the version being sent. */
  readonly version: string;
  /** True for a tombstone. */
  readonly deleted: boolean;
  /** The declared columns' values. */
  readonly data: Record<string, unknown>;
  /** Per-column versions (`lww: "column"` tables): column name (or `is_deleted`) → HLC. */
  readonly columnVersions?: Record<string, string>;
}

/** Identifies a sent change for {@linkcode acknowledgeStatements}. */
export interface DirtyRowAck {
  /** Table name. */
  readonly table: string;
  /** The row's `system_id`. */
  readonly id: string;
  /** The version that was sent. */
  readonly version: string;
}

const ON_CONFLICT = ` ON CONFLICT (table_name, row_id) DO UPDATE SET version = excluded.version`;

/** Records (or moves forward) the outbox entries of rows just written. */
export function recordStatement(
  table: string,
  entries: readonly { id: string; version: string }[],
): SqlStatement {
  return {
    sql: `INSERT INTO _dirty_rows (table_name, row_id, version) ` +
      `SELECT ?, value ->> 0, value ->> 1 FROM json_each(?) WHERE true` + ON_CONFLICT,
    args: [table, JSON.stringify(entries.map((entry) => [entry.id, entry.version]))],
  };
}

/**
 * Records the entry of a row only if the statement just before it in the same
 * batch changed a row (an update or delete that found its target).
 */
export function recordIfChangedStatement(table: string, id: string, version: string): SqlStatement {
  return {
    sql:
      `INSERT INTO _dirty_rows (table_name, row_id, version) SELECT ?, ?, ? WHERE changes() > 0` +
      ON_CONFLICT,
    args: [table, id, version],
  };
}

/** Removes the entries whose version is not newer than the one acknowledged. */
export function acknowledgeStatements(acks: readonly DirtyRowAck[]): SqlStatement[] {
  return acks.map((ack) => ({
    sql: `DELETE FROM _dirty_rows WHERE table_name = ? AND row_id = ? AND version <= ?`,
    args: [ack.table, ack.id, ack.version],
  }));
}

/**
 * Drops the entries of a row-LWW table whose local change was superseded by a
 * newer server version (the row's version is now newer than the entry's):
 * that change lost, and sending it would only come back `stale`.
 */
export function supersededStatement(info: TableInfo): SqlStatement {
  return {
    sql: `DELETE FROM _dirty_rows WHERE table_name = ? AND version < ` +
      `(SELECT t.system_version FROM ${info.quoted} t WHERE t.system_id = _dirty_rows.row_id)`,
    args: [info.name],
  };
}

/** Counts the outbox entries. */
export async function countDirtyRows(executor: SqlExecutor): Promise<number> {
  const { rows } = await executor.execute({ sql: `SELECT count(*) AS n FROM _dirty_rows` });
  return Number(rows[0]?.n ?? 0);
}

/**
 * Reads up to `limit` outbox entries, oldest version first, with their rows.
 * Entries whose table is no longer declared or whose row is gone (removed by
 * raw SQL) cannot be sent; they are removed so they never hold a slot.
 */
export async function readDirtyRows(
  executor: SqlExecutor,
  tables: ReadonlyMap<string, TableInfo>,
  limit: number,
): Promise<DirtyRow[]> {
  const { rows: entries } = await executor.execute({
    sql: `SELECT table_name, row_id FROM _dirty_rows ORDER BY version, table_name, row_id LIMIT ?`,
    args: [limit],
  });
  const idsByTable = new Map<string, string[]>();
  for (const entry of entries) {
    const table = String(entry.table_name);
    const ids = idsByTable.get(table) ?? [];
    ids.push(String(entry.row_id));
    idsByTable.set(table, ids);
  }

  const found = new Map<string, DirtyRow>();
  const orphans: SqlStatement[] = [];
  for (const [table, ids] of idsByTable) {
    const info = tables.get(table);
    if (info === undefined || !info.synced) {
      orphans.push({
        sql:
          `DELETE FROM _dirty_rows WHERE table_name = ? AND row_id IN (SELECT value FROM json_each(?))`,
        args: [table, JSON.stringify(ids)],
      });
      continue;
    }
    const extra = info.perColumn ? `, ${quoteId(COLUMN_VERSIONS)}` : "";
    const { rows } = await executor.execute({
      sql: `SELECT ${info.selectList}${extra} FROM ${info.quoted} ` +
        `WHERE system_id IN (SELECT value FROM json_each(?))`,
      args: [JSON.stringify(ids)],
    });
    for (const row of rows) found.set(`${table}\u0000${row.system_id}`, toDirtyRow(info, row));
    const missing = ids.filter((id) => !found.has(`${table}\u0000${id}`));
    if (missing.length > 0) {
      orphans.push({
        sql:
          `DELETE FROM _dirty_rows WHERE table_name = ? AND row_id IN (SELECT value FROM json_each(?))`,
        args: [table, JSON.stringify(missing)],
      });
    }
  }
  if (orphans.length > 0) await executor.batch(orphans);

  const result: DirtyRow[] = [];
  for (const entry of entries) {
    const row = found.get(`${entry.table_name}\u0000${entry.row_id}`);
    if (row !== undefined) result.push(row);
  }
  return result;
}

function toDirtyRow(info: TableInfo, row: Record<string, SqlValue>): DirtyRow {
  const data: Record<string, unknown> = {};
  for (const column of info.columns) {
    data[column.name] = decodeValue(column.kind, row[column.name]!);
  }
  const dirty: DirtyRow = {
    table: info.name,
    id: String(row.system_id),
    version: String(row.system_version),
    deleted: Number(row.is_deleted) === 1,
    data,
  };
  if (!info.perColumn) return dirty;
  return { ...dirty, columnVersions: JSON.parse(String(row[COLUMN_VERSIONS])) };
}
