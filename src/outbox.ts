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
 * Reads come as an {@linkcode OutboxRead}: the rows of one read, where the
 * next read continues, and the statements that acknowledge them. Which
 * entries an acknowledgement removes depends on the read the rows came
 * from (see {@linkcode OutboxRead.acknowledgeStatements}), so the read
 * carries that knowledge itself.
 *
 * @module
 */

import type { SqlExecutor, SqlStatement, SqlValue } from "./adapter.ts";
import { blobHexSql, realJsonSql } from "./json_rows.ts";
import { setAsideStatements } from "./rejected.ts";
import { COLUMN_VERSIONS } from "./schema.ts";
import { empty, id, raw, sql } from "./sql.ts";
import { decodeValue, quoteId, type TableInfo } from "./table_info.ts";
import { isRowId, ROW_ID_RULE } from "./values.ts";
import { fromHex } from "./wire.ts";

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
  /** The row's `system_created_at`, so every replica stores the same creation version. */
  readonly createdAt?: string;
  /** The declared columns' values. */
  readonly data: Record<string, unknown>;
  /** Per-column versions (`lww: "column"` tables): column name (or `is_deleted`) → HLC. */
  readonly columnVersions?: Record<string, string>;
}

/** Identifies a sent change for an acknowledgement. */
export interface DirtyRowAck {
  /** Table name. */
  readonly table: string;
  /** The row's `system_id`. */
  readonly id: string;
  /** The version that was sent. */
  readonly version: string;
}

/** The DDL of `_dirty_rows`. */
export const OUTBOX_TABLE_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS _dirty_rows (table_name TEXT NOT NULL, row_id TEXT NOT NULL, ` +
  `version TEXT NOT NULL, PRIMARY KEY (table_name, row_id)) WITHOUT ROWID`,
  `CREATE INDEX IF NOT EXISTS _dirty_rows_version_idx ON _dirty_rows (version)`,
];

// An entry moves forward to the version of the row's latest write.
const onConflict = raw(`ON CONFLICT (table_name, row_id) DO UPDATE SET version = excluded.version`);

/** Records (or moves forward) the outbox entries of rows just written. */
export function recordStatement(
  table: string,
  entries: readonly { id: string; version: string }[],
): SqlStatement {
  const pairs = JSON.stringify(entries.map((entry) => [entry.id, entry.version]));
  return sql`INSERT INTO _dirty_rows (table_name, row_id, version)
    SELECT ${table}, value ->> 0, value ->> 1 FROM json_each(${pairs}) WHERE true ${onConflict}`;
}

/**
 * Records the entry of a row only if the statement just before it in the same
 * batch changed a row (an update or delete that found its target).
 */
export function recordIfChangedStatement(
  table: string,
  rowId: string,
  version: string,
): SqlStatement {
  return sql`INSERT INTO _dirty_rows (table_name, row_id, version)
    SELECT ${table}, ${rowId}, ${version} WHERE changes() > 0 ${onConflict}`;
}

/**
 * Drops the entries of a row-LWW table whose local change was superseded by a
 * newer server version (the row's version is now newer than the entry's):
 * that change lost, and sending it would only come back `stale`.
 */
export function supersededStatement(info: TableInfo): SqlStatement {
  return sql`DELETE FROM _dirty_rows WHERE table_name = ${info.name} AND version <
    (SELECT t.system_version FROM ${id(info.name)} t WHERE t.system_id = _dirty_rows.row_id)`;
}

/** Counts the outbox entries. */
export async function countDirtyRows(executor: SqlExecutor): Promise<number> {
  const { rows } = await executor.execute({ sql: `SELECT count(*) AS n FROM _dirty_rows` });
  return Number(rows[0]?.n ?? 0);
}

/**
 * Where an entry stands in outbox order (version, then table, then id): the
 * outbox entry's own version, which for a column table can be older than the
 * row's version a `DirtyRow` carries.
 */
export type OutboxPosition = readonly [version: string, table: string, id: string];

/** The rows of one outbox read, and how to acknowledge them. */
export interface OutboxRead {
  /** The changes read, oldest entry first. */
  readonly rows: DirtyRow[];
  /** The position of the last entry read: the next read continues after it. */
  readonly end: OutboxPosition | undefined;
  /** The outbox position of one of `rows`. */
  positionOf(row: DirtyRowAck): OutboxPosition | undefined;
  /**
   * The statements removing the entries of `rows` (this batch's rows, all of
   * them by default) whose version is not newer than the one sent: one
   * statement per table, whatever the number of rows.
   *
   * Each statement compares with the newest version acknowledged among the
   * rows of this batch's table rather than each row's own. For the rows of one
   * read that is the same test: every version they carried was known to this
   * replica's clock when the outbox was read, and a write made after that
   * gets a newer version than all of them, so its entry survives either way.
   * Rows of different reads must not be compared with each other's versions
   * (a later read can carry versions newer than a write still unsent): that
   * is why an acknowledgement belongs to its batch. (An exact per-row
   * comparison in one statement, a JSON lookup per row, took 659-1,495 ms per
   * 100,000 entries against 258-288 ms for this one, in batches of 1,000 on
   * `:memory:`.)
   */
  acknowledgeStatements(rows?: readonly DirtyRowAck[]): SqlStatement[];
}

/**
 * The statements acknowledging `acks` that no batch describes (copies, rows
 * read by another process): treated as the rows of one read.
 */
export function acknowledgeStatements(acks: readonly DirtyRowAck[]): SqlStatement[] {
  const groups = new Map<string, { ids: string[]; newest: string }>();
  for (const { table, id, version } of acks) {
    const group = groups.get(table);
    if (group === undefined) groups.set(table, { ids: [id], newest: version });
    else {
      group.ids.push(id);
      if (version > group.newest) group.newest = version;
    }
  }
  return [...groups].map(([table, { ids, newest }]) =>
    sql`DELETE FROM _dirty_rows WHERE table_name = ${table}
      AND row_id IN (SELECT value FROM json_each(${JSON.stringify(ids)})) AND version <= ${newest}`
  );
}

/**
 * Reads up to `limit` outbox entries, oldest version first, with their rows;
 * with `after`, only the entries after that position. Entries whose table is
 * no longer declared or whose row is gone (removed by raw SQL) cannot be
 * sent; they are set aside in `_sync_rejected` so they never hold a slot.
 *
 * Entries and rows are two reads (one per table for the rows; faster than one
 * statement looking each row up in outbox order). A write between them is
 * harmless: a row carries its own current version with its data, and an entry
 * it moved is read again after this batch.
 */
export async function readOutbox(
  executor: SqlExecutor,
  tables: ReadonlyMap<string, TableInfo>,
  limit: number,
  after?: OutboxPosition,
): Promise<OutboxRead> {
  let from = after;
  for (;;) {
    const entries = await readEntries(executor, limit, from);
    const found = await readRows(executor, tables, entries);
    const positions = new Map<DirtyRowAck, OutboxPosition>();
    for (const position of entries) {
      const row = found.get(position[1])?.get(position[2]);
      if (row !== undefined) positions.set(row, position);
    }
    // Empty only when the outbox has nothing more: a page whose entries all
    // turned out unsendable (and were set aside) is followed by the next.
    if (positions.size > 0 || entries.length < limit) return outboxRead(positions, entries.at(-1));
    from = entries.at(-1);
  }
}

function outboxRead(
  positions: ReadonlyMap<DirtyRowAck, OutboxPosition>,
  end: OutboxPosition | undefined,
): OutboxRead {
  const rows = [...positions.keys()] as DirtyRow[];
  return {
    rows,
    end,
    positionOf: (row) => positions.get(row),
    acknowledgeStatements: (acked = rows) => acknowledgeStatements(acked),
  };
}

// The entries after `from`, in outbox order. Each read returns one JSON
// value: reading a result row costs more than building it in SQLite and
// parsing it in one go. The order is restored here rather than with
// `json_group_array(… ORDER BY …)`: the statement parser of a libSQL embedded
// replica, which routes each statement to the local file or to the primary,
// rejects an ORDER BY inside an aggregate call.
async function readEntries(
  executor: SqlExecutor,
  limit: number,
  from: OutboxPosition | undefined,
): Promise<OutboxPosition[]> {
  const after = from === undefined
    ? empty
    : sql`WHERE (version, table_name, row_id) > (${from[0]}, ${from[1]}, ${from[2]})`;
  const { rows: [head] } = await executor.execute(
    sql`SELECT json_group_array(json_array(version, table_name, row_id)) AS entries
      FROM (SELECT table_name, row_id, version FROM _dirty_rows ${after}
        ORDER BY version, table_name, row_id LIMIT ${limit})`,
  );
  const entries = JSON.parse(String(head?.entries ?? "[]")) as OutboxPosition[];
  return entries.sort(compareEntries);
}

// Outbox order: SQLite's, which compares TEXT as UTF-8 bytes, that is by code
// point (a JavaScript `<` compares UTF-16 code units, which differs for
// characters beyond U+FFFF against U+E000–U+FFFF).
function compareEntries(a: OutboxPosition, b: OutboxPosition): number {
  for (let i = 0; i < 3; i++) {
    const order = compareCodePoints(a[i]!, b[i]!);
    if (order !== 0) return order;
  }
  return 0;
}

function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

// Surrogates (code points beyond U+FFFF) rank above U+E000–U+FFFF, as in UTF-8.
function codePointRank(unit: number): number {
  if (unit >= 0xe000) return unit - 0x800;
  if (unit >= 0xd800) return unit + 0x2000;
  return unit;
}

// The rows of `entries`, per table and id; entries that cannot be sent are
// set aside first.
async function readRows(
  executor: SqlExecutor,
  tables: ReadonlyMap<string, TableInfo>,
  entries: readonly OutboxPosition[],
): Promise<Map<string, Map<string, DirtyRow>>> {
  const idsByTable = new Map<string, string[]>();
  // An id the server would refuse (written by raw SQL): never sent, kept aside.
  const badIds = new Map<string, string[]>();
  for (const [, table, id] of entries) {
    const group = isRowId(id) ? idsByTable : badIds;
    const ids = group.get(table);
    if (ids === undefined) group.set(table, [id]);
    else ids.push(id);
  }
  const found = new Map<string, Map<string, DirtyRow>>();
  const unsendable: SqlStatement[] = [];
  for (const [table, ids] of badIds) {
    unsendable.push(
      ...setAsideStatements(table, ids, "invalid_value", `The row id is not ${ROW_ID_RULE}`),
    );
  }
  for (const [table, ids] of idsByTable) {
    const info = tables.get(table);
    if (info === undefined || !info.synced) {
      const why = `Table ${table} is no longer a synced table`;
      unsendable.push(...setAsideStatements(table, ids, "unknown_table", why));
      continue;
    }
    const byId = await readTableRows(executor, info, ids);
    found.set(table, byId);
    const missing = byId.size === ids.length ? [] : ids.filter((id) => !byId.has(id));
    if (missing.length > 0) {
      const why = `The row was removed from ${table} outside the API`;
      unsendable.push(...setAsideStatements(table, missing, "row_missing", why));
    }
  }
  if (unsendable.length > 0) await executor.batch(unsendable);
  return found;
}

async function readTableRows(
  executor: SqlExecutor,
  info: TableInfo,
  ids: readonly string[],
): Promise<Map<string, DirtyRow>> {
  const { rows: [page] } = await executor.execute(
    sql`SELECT json_group_array(${raw(dirtyRowJsonSql(info))}) AS rows FROM ${id(info.name)}
      WHERE system_id IN (SELECT value FROM json_each(${JSON.stringify(ids)}))`,
  );
  const byId = new Map<string, DirtyRow>();
  for (const values of JSON.parse(String(page?.rows ?? "[]")) as unknown[][]) {
    const row = toDirtyRow(info, values);
    byId.set(row.id, row);
  }
  return byId;
}

// One outbox row as a JSON array: the declared columns (blobs as hex), then
// system_id, system_version, is_deleted, system_created_at and, for column
// tables, the versions.
// (An array, not the DirtyRow object itself: SQLite builds it and JavaScript
// parses it in about half the time, even counting the conversion.)
function dirtyRowJsonSql(info: TableInfo): string {
  const values = info.columns.map((c) =>
    c.kind === "blob" ? blobHexSql(c.quoted) : c.kind === "real" ? realJsonSql(c.quoted) : c.quoted
  );
  values.push("system_id", "system_version", "is_deleted", "system_created_at");
  if (info.perColumn) values.push(quoteId(COLUMN_VERSIONS));
  return `json_array(${values.join(", ")})`;
}

function toDirtyRow(info: TableInfo, values: readonly unknown[]): DirtyRow {
  const data: Record<string, unknown> = {};
  const { columns } = info;
  for (let i = 0; i < columns.length; i++) {
    const column = columns[i]!;
    const value = values[i] as SqlValue;
    data[column.name] = column.kind === "blob" && typeof value === "string"
      ? fromHex(value)
      : decodeValue(column.kind, value);
  }
  const at = columns.length;
  const dirty: DirtyRow = {
    table: info.name,
    id: String(values[at]),
    version: String(values[at + 1]),
    deleted: Number(values[at + 2]) === 1,
    createdAt: String(values[at + 3]),
    data,
  };
  if (!info.perColumn) return dirty;
  return { ...dirty, columnVersions: JSON.parse(String(values[at + 4])) };
}
