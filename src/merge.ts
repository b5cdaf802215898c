/**
 * Last-write-wins merge of server changes into the local database
 * (`applyServerChanges`).
 *
 * Every incoming row becomes part of a multi-row UPSERT (`json_rows.ts`) whose conflict clause
 * carries the whole decision, so the merge needs no read-then-write round trip
 * and costs well under one statement per row — the same code runs against a
 * remote primary at the edge, where each round trip costs:
 *
 * - `lww: "row"`: an unknown row is inserted; a known row is replaced only when
 *   the incoming `system_version` is greater. A newer local change (pending in
 *   the outbox or not) is therefore never overwritten; an older pending change
 *   that lost is dropped from the outbox in the same transaction.
 * - `lww: "column"`: each column (and the tombstone flag `is_deleted`) carries
 *   its own version in `system_column_versions`; each is taken only where the
 *   incoming column version is greater, so concurrent edits of different
 *   columns both survive. The row's `system_version` is the greatest column
 *   version.
 *
 * Everything is validated before anything is written: an unknown table or
 * column, a malformed version or a value of the wrong type raises a
 * `SyncError` and applies nothing from that call. The clock then `receive`s the
 * newest version (refusing one beyond `maxDrift`). Rows, cursors and the clock
 * are written in one transaction, in bounded chunks, so memory stays bounded
 * for large pages.
 *
 * Equal versions are normally the same write (a version embeds its node id),
 * so applying a change twice, or changes in any order, converges. A replica
 * restored from an older copy of its file can issue a version again for
 * other values; the merge then orders the two states by their values, the
 * same way everywhere, so that case converges too.
 *
 * @module
 */

import type { SqlExecutor, SqlStatement } from "./adapter.ts";
import { storeCursorStatement } from "./cursors.ts";
import { SyncError } from "./errors.ts";
import type { HlcClock } from "./hlc.ts";
import { jsonSelectList, toJsonValue } from "./json_rows.ts";
import { persistClockStatement } from "./meta.ts";
import { type NormalizedRow, normalizeRow } from "./normalize.ts";
import { supersededStatement } from "./outbox.ts";
import { COLUMN_VERSIONS } from "./schema.ts";
import { type ColumnInfo, quoteId, type TableInfo } from "./table_info.ts";

/**
 * One row as the server sends it. The flat shape of the declarative_sqlite seed
 * (the row's columns next to `system_id`, `system_version`, `is_deleted`) is
 * accepted as well.
 */
export interface ServerRow {
  /** The row's `system_id`. */
  readonly id: string;
  /** HLC of the change. */
  readonly version: string;
  /** True (or 1) for a tombstone. */
  readonly deleted?: boolean | 0 | 1;
  /** Values of the declared columns; columns left out keep their stored value. */
  readonly data?: Record<string, unknown>;
  /** Per-column versions (`lww: "column"`); defaults to `version` for every column in `data`. */
  readonly columnVersions?: Record<string, string>;
  /** HLC of the row's creation; defaults to `version`. */
  readonly createdAt?: string;
}

/** The changes of one table in a pull response. */
export interface ServerTableChanges {
  /** The changed rows. */
  readonly rows: readonly (ServerRow | Record<string, unknown>)[];
  /** The server's cursor after these rows; stored and handed back on the next pull. */
  readonly cursor?: unknown;
  /** True when the server has more rows for this table. */
  readonly hasMore?: boolean;
}

/** The `changes` object of a pull response: per table, rows and cursor. */
export type ServerChanges = Readonly<Record<string, ServerTableChanges>>;

/** What `applyServerChanges` did. */
export interface ApplyResult {
  /** Rows received, per table. */
  readonly received: Readonly<Record<string, number>>;
  /** The newest version seen, if any row was received. */
  readonly newestVersion: string | undefined;
}

/** Rows per UPSERT statement (bound as one JSON argument). */
const ROWS_PER_STATEMENT = 1_000;
/** Statements per round trip inside the apply transaction. */
const STATEMENTS_PER_BATCH = 4;

interface TablePlan {
  readonly info: TableInfo;
  readonly rows: NormalizedRow[];
  readonly cursor: unknown;
  readonly hasCursor: boolean;
}

/**
 * Validates `changes` completely and returns the per-table plans and the newest version.
 *
 * @throws {SyncError} `unknown_table`, `unknown_column`, `invalid_version`,
 * `invalid_change` or `invalid_value`, naming the table, row and column.
 */
export function planServerChanges(
  changes: ServerChanges,
  tables: ReadonlyMap<string, TableInfo>,
): { plans: TablePlan[]; newest: string | undefined } {
  if (typeof changes !== "object" || changes === null || Array.isArray(changes)) {
    throw new SyncError("invalid_change", "Server changes must be an object keyed by table name");
  }
  const plans: TablePlan[] = [];
  let newest: string | undefined;
  for (const [table, tableChanges] of Object.entries(changes)) {
    const info = tables.get(table);
    if (info === undefined || !info.synced) {
      throw new SyncError("unknown_table", `Unknown synced table ${table} in server changes`, {
        details: { table },
      });
    }
    if (typeof tableChanges !== "object" || tableChanges === null) {
      throw new SyncError("invalid_change", `Changes of table ${table} must be an object`, {
        details: { table },
      });
    }
    const input = tableChanges.rows ?? [];
    if (!Array.isArray(input)) {
      throw new SyncError("invalid_change", `rows of table ${table} must be an array`, {
        details: { table },
      });
    }
    const rows = new Array<NormalizedRow>(input.length);
    for (let i = 0; i < input.length; i++) {
      const row = normalizeRow(info, input[i]);
      if (newest === undefined || row.version > newest) newest = row.version;
      rows[i] = row;
    }
    plans.push({
      info,
      rows,
      cursor: tableChanges.cursor ?? null,
      hasCursor: "cursor" in tableChanges && tableChanges.cursor !== undefined,
    });
  }
  return { plans, newest };
}

/**
 * Writes validated plans inside the caller's transaction: rows, superseded
 * outbox entries, cursors and the clock.
 */
export async function writeServerChanges(
  tx: SqlExecutor,
  plans: readonly TablePlan[],
  hlc: HlcClock,
): Promise<void> {
  let pending: SqlStatement[] = [];
  const flush = async () => {
    if (pending.length > 0) await tx.batch(pending);
    pending = [];
  };
  for (const plan of plans) {
    for (const group of groupByColumns(plan.info, plan.rows)) {
      for (let start = 0; start < group.rows.length; start += ROWS_PER_STATEMENT) {
        pending.push(
          upsertStatement(
            plan.info,
            group.columns,
            group.rows.slice(start, start + ROWS_PER_STATEMENT),
          ),
        );
        if (pending.length >= STATEMENTS_PER_BATCH) await flush();
      }
    }
    if (plan.rows.length > 0 && !plan.info.perColumn) pending.push(supersededStatement(plan.info));
    if (plan.hasCursor) pending.push(storeCursorStatement(plan.info.name, plan.cursor));
  }
  pending.push(persistClockStatement(hlc));
  await flush();
}

/** Groups rows by the set of columns they carry: each group shares one statement shape. */
export function groupByColumns(
  info: TableInfo,
  rows: readonly NormalizedRow[],
): { columns: ColumnInfo[]; rows: NormalizedRow[] }[] {
  const groups = new Map<string, { columns: ColumnInfo[]; rows: NormalizedRow[] }>();
  for (const row of rows) {
    const group = groups.get(row.signature);
    if (group !== undefined) {
      group.rows.push(row);
      continue;
    }
    const columns = info.columns.filter((c) => row.values[c.index] !== undefined);
    groups.set(row.signature, { columns, rows: [row] });
  }
  return [...groups.values()];
}

/**
 * A column the caller sets on every row the UPSERT writes, to a number
 * counted inside SQL (the server's change sequence): the rows get
 * `base + 1`, `base + 2`, … in their order in the statement.
 */
export interface StampColumn {
  /** The column, added by the caller's migration extension. */
  readonly column: string;
  /**
   * A SQL expression, evaluated once for the statement, giving the number
   * before the first row's: e.g. a scalar subquery reading a counter.
   */
  readonly base: string;
  /**
   * Whether the statement returns the rows it applied (default true); a
   * caller that can find them by their numbers leaves it out, which spares
   * a result row per row.
   */
  readonly returning?: boolean;
}

/** Options of {@linkcode upsertStatement}. */
export interface UpsertOptions {
  /**
   * Each row written also gets a number; the statement answers the rows it
   * applied (`RETURNING system_id` and the stamp column, unless
   * `returning` is false): a row whose change lost is not written, so it is
   * not returned.
   */
  readonly stamp?: StampColumn;
  /**
   * The table's scope column must already hold the incoming row's value for
   * a stored row to be changed: a write never crosses scopes, whatever
   * checks ran before it.
   */
  readonly scoped?: boolean;
}

/**
 * The UPSERT of `rows`, all carrying `columns`, as one statement. With
 * `stamp` (the server's sequence), each row also gets its number, counted in
 * SQL, and the statement returns the rows it applied with their numbers.
 *
 * The creation version follows the winning change: the newer version brings
 * its own `system_created_at`, so every replica ends with the same one.
 */
export function upsertStatement(
  info: TableInfo,
  columns: readonly ColumnInfo[],
  rows: readonly NormalizedRow[],
  { stamp, scoped = false }: UpsertOptions = {},
): SqlStatement {
  const elements: unknown[] = new Array(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    const element: unknown[] = [row.id, row.version, row.createdAt, row.deleted];
    if (info.perColumn) element.push(JSON.stringify(row.columnVersions));
    for (const column of columns) {
      element.push(toJsonValue(row.values[column.index]!, column.kind));
    }
    elements[r] = element;
  }
  return {
    sql: upsertSql(info, columns, stamp, scoped && info.def.scope !== undefined),
    args: [JSON.stringify(elements)],
  };
}

const upsertSqlCache = new WeakMap<TableInfo, Map<string, string>>();

// A row value ordering the given columns of `row` totally, NULL first: two
// states written under one version (a replica restored from an older copy of
// its file can issue a version again) are then ordered by their values, so
// every replica keeps the same one. (SQLite's row-value comparison is
// unknown when an element is NULL; the IS NULL flag comes first instead.)
function orderKey(row: string, columns: readonly string[]): string {
  return `(${columns.map((c) => `${row}.${c} IS NOT NULL, coalesce(${row}.${c}, 0)`).join(", ")})`;
}

// The UPSERT of rows carrying `carried`, cached per table, column set, stamp and scope.
function upsertSql(
  info: TableInfo,
  carried: readonly ColumnInfo[],
  stamp: StampColumn | undefined,
  scoped: boolean,
): string {
  let cache = upsertSqlCache.get(info);
  if (cache === undefined) upsertSqlCache.set(info, cache = new Map());
  const key = `${stamp?.column ?? ""}:${stamp?.base ?? ""}:${stamp?.returning ?? true}:${scoped}:${
    carried.map((c) => c.name).join(",")
  }`;
  let sql = cache.get(key);
  if (sql === undefined) {
    const t = info.quoted;
    const system = [`system_id`, `system_version`, `system_created_at`, `is_deleted`];
    if (info.perColumn) system.push(quoteId(COLUMN_VERSIONS));
    const kinds = [...system.map(() => undefined), ...carried.map((c) => c.kind)];
    const selected = [jsonSelectList(kinds)];
    const columns = [...system, ...carried.map((c) => c.quoted)];
    const sameScope = scoped
      ? ` AND ${t}.${quoteId(info.def.scope!)} IS excluded.${quoteId(info.def.scope!)}`
      : "";
    const { sets, newer } = info.perColumn
      ? columnLwwUpdate(info, carried)
      : rowLwwUpdate(info, carried);
    let returning = "";
    if (stamp !== undefined) {
      const column = quoteId(stamp.column);
      columns.push(column);
      // `key` is the row's index in the JSON array: numbers follow row order.
      selected.push(`(${stamp.base}) + key + 1`);
      sets.push(`${column} = excluded.${column}`);
      if (stamp.returning !== false) returning = ` RETURNING system_id, ${column}`;
    }
    sql = `INSERT INTO ${t} (${columns.join(", ")}) ` +
      `SELECT ${selected.join(", ")} FROM json_each(?) WHERE true ` +
      `ON CONFLICT (system_id) DO UPDATE SET ${sets.join(", ")} WHERE (${newer})${sameScope}` +
      returning;
    cache.set(key, sql);
  }
  return sql;
}

// Row LWW: the whole row is replaced when the incoming version is newer (or,
// under one version, the incoming state orders after the stored one).
function rowLwwUpdate(
  info: TableInfo,
  carried: readonly ColumnInfo[],
): { sets: string[]; newer: string } {
  const t = info.quoted;
  const quoted = carried.map((c) => c.quoted);
  const sets = [
    `system_version = excluded.system_version`,
    `system_created_at = excluded.system_created_at`,
    `is_deleted = excluded.is_deleted`,
    ...quoted.map((c) => `${c} = excluded.${c}`),
  ];
  const state = (row: string) => orderKey(row, [`system_created_at`, `is_deleted`, ...quoted]);
  const newer = `excluded.system_version > ${t}.system_version OR ` +
    `(excluded.system_version = ${t}.system_version AND ${state("excluded")} > ${state(t)})`;
  return { sets, newer };
}

// Column LWW: each carried column (and the tombstone flag) is taken where its
// incoming version is newer; the versions merge; the row version is the
// greatest column version.
function columnLwwUpdate(
  info: TableInfo,
  carried: readonly ColumnInfo[],
): { sets: string[]; newer: string } {
  const t = info.quoted;
  const cv = quoteId(COLUMN_VERSIONS);
  const mine = (name: string) => `coalesce(${t}.${cv} ->> '$.${name}', '')`;
  const theirs = (name: string) => `(excluded.${cv} ->> '$.${name}')`;
  const newerColumn = (name: string) =>
    `(${theirs(name)} > ${mine(name)} OR (${theirs(name)} = ${mine(name)} AND ` +
    `${orderKey("excluded", [quoteId(name)])} > ${orderKey(t, [quoteId(name)])}))`;
  const tracked = [...carried.map((c) => c.name), "is_deleted"];
  const sets = tracked.map((name) => {
    const c = quoteId(name);
    return `${c} = CASE WHEN ${newerColumn(name)} THEN excluded.${c} ELSE ${t}.${c} END`;
  });
  // A column the change does not carry has no incoming version: keep ours.
  // (NULL where neither side has one: json_patch then adds no key.)
  const merged = tracked
    .map((name) => `'${name}', nullif(max(${mine(name)}, coalesce(${theirs(name)}, '')), '')`)
    .join(", ");
  sets.push(`${cv} = json_patch(${t}.${cv}, json_object(${merged}))`);
  // SET expressions read the row as it was: the creation version comes with
  // the newer row version, which is the greatest column version.
  sets.push(
    `system_created_at = CASE WHEN excluded.system_version > ${t}.system_version OR ` +
      `(excluded.system_version = ${t}.system_version AND ` +
      `excluded.system_created_at > ${t}.system_created_at) ` +
      `THEN excluded.system_created_at ELSE ${t}.system_created_at END`,
    `system_version = max(${t}.system_version, excluded.system_version)`,
  );
  return { sets, newer: tracked.map(newerColumn).join(" OR ") };
}
