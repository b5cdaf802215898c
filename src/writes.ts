/**
 * Tracked writes: the statements of `insert`, `insertMany`, `update` and
 * `delete`. Every write to a synced table is stamped with a fresh HLC version
 * and records its outbox entry in the same batch, so no crash can separate a
 * row from its entry. Writes to local-only tables are plain SQL.
 *
 * Statements are built here and run by the caller (`database.ts`) in one
 * batch, or inside the caller's transaction. Inserts bind many rows as one JSON
 * argument (`json_rows.ts`), so `insertMany` costs a handful of statements,
 * not two per row.
 *
 * @module
 */

import type { SqlStatement } from "./adapter.ts";
import { SyncError } from "./errors.ts";
import type { HlcClock } from "./hlc.ts";
import { uuidv7 } from "./ids.ts";
import { jsonSelectList, toJsonValue } from "./json_rows.ts";
import { recordIfChangedStatement, recordStatement } from "./outbox.ts";
import { COLUMN_VERSIONS, SYSTEM_COLUMNS } from "./schema.ts";
import { decodeValue, encodeValue, quoteId, type TableInfo } from "./table_info.ts";
import { empty, id, join, raw, type Sql, sql } from "./sql.ts";
import { isRowId, ROW_ID_RULE } from "./values.ts";

/** Rows per INSERT statement (bound as one JSON argument, see `json_rows.ts`). */
const ROWS_PER_STATEMENT = 1_000;

const SYSTEM_ID: readonly string[] = ["system_id"];
const NOTHING: readonly string[] = [];

/** The statements of an insert and the rows as the API returns them. */
export interface PreparedInsert {
  /** Run in order, in one batch. */
  readonly statements: SqlStatement[];
  /** The inserted rows. */
  readonly rows: Record<string, unknown>[];
}

/** Builds the statements inserting `values` (one or many rows) into a table. */
export function prepareInsert(
  info: TableInfo,
  values: readonly Record<string, unknown>[],
  hlc: HlcClock,
): PreparedInsert {
  const kinds = [
    ...info.columns.map((c) => c.kind),
    ...(info.synced ? SYSTEM_COLUMNS.map(() => undefined) : []),
    ...(info.perColumn ? [undefined] : []),
  ];
  const columnList = [
    ...info.columns.map((c) => c.quoted),
    ...(info.synced ? SYSTEM_COLUMNS.map(quoteId) : []),
    ...(info.perColumn ? [quoteId(COLUMN_VERSIONS)] : []),
  ].join(", ");
  const sql = `INSERT INTO ${info.quoted} (${columnList}) ` +
    `SELECT ${jsonSelectList(kinds)} FROM json_each(?) WHERE true`;

  const statements: SqlStatement[] = [];
  const rows: Record<string, unknown>[] = new Array(values.length);
  for (let start = 0; start < values.length; start += ROWS_PER_STATEMENT) {
    const end = Math.min(values.length, start + ROWS_PER_STATEMENT);
    const elements: unknown[][] = [];
    const entries: { id: string; version: string }[] = [];
    for (let i = start; i < end; i++) {
      const input = values[i]!;
      const element: unknown[] = [];
      const row = encodeInsertRow(info, input, element);
      if (info.synced) {
        const version = hlc.now();
        const id = systemIdOf(info, input, hlc);
        element.push(id, version, version, 0);
        if (info.perColumn) element.push(JSON.stringify(allColumnVersions(info, version)));
        row.system_id = id;
        row.system_version = version;
        row.system_created_at = version;
        row.is_deleted = 0;
        entries.push({ id, version });
      }
      elements.push(element);
      rows[i] = row;
    }
    statements.push({ sql, args: [JSON.stringify(elements)] });
    if (entries.length > 0) statements.push(recordStatement(info.name, entries));
  }
  return { statements, rows };
}

/** Validates one row of an insert, appends its values to the JSON `element`, returns the API row. */
function encodeInsertRow(
  info: TableInfo,
  input: Record<string, unknown>,
  element: unknown[],
): Record<string, unknown> {
  if (typeof input !== "object" || input === null) {
    throw new TypeError(`Insert into ${info.name} expects an object, got ${typeof input}`);
  }
  assertKnownColumns(info, input, info.synced ? SYSTEM_ID : NOTHING);
  const row: Record<string, unknown> = {};
  for (const column of info.columns) {
    const given = input[column.name];
    if (given === undefined) {
      if (column.encodedDefault !== undefined) {
        element.push(toJsonValue(column.encodedDefault, column.kind));
        row[column.name] = decodeValue(column.kind, column.encodedDefault);
        continue;
      }
      if (column.notNull) {
        throw new SyncError(
          "invalid_value",
          `Missing value for ${info.name}.${column.name}: the column is notNull without a default`,
          { details: { table: info.name, column: column.name } },
        );
      }
      element.push(null);
      row[column.name] = null;
      continue;
    }
    const encoded = encodeValue(info.name, column.name, column.kind, given);
    if (encoded === null && column.notNull) throw notNullError(info, column.name);
    element.push(toJsonValue(encoded, column.kind));
    row[column.name] = decodeValue(column.kind, encoded);
  }
  return row;
}

function systemIdOf(info: TableInfo, input: Record<string, unknown>, hlc: HlcClock): string {
  const given = input.system_id;
  if (given === undefined) return uuidv7(hlc.wallClock());
  if (!isRowId(given)) {
    throw new SyncError(
      "invalid_value",
      `Invalid system_id for ${info.name}: expected ${ROW_ID_RULE}`,
      { details: { table: info.name, column: "system_id" } },
    );
  }
  return given;
}

/** The column-version map of a freshly written row: every column (and `is_deleted`) at `version`. */
function allColumnVersions(info: TableInfo, version: string): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const column of info.columns) versions[column.name] = version;
  versions.is_deleted = version;
  return versions;
}

/**
 * The statements of an update; the first one returns the updated row (none
 * when not found). A patch that sets no column of a synced table gives no
 * statement: the row stays as it is.
 */
export function prepareUpdate(
  info: TableInfo,
  key: string | number,
  patch: Record<string, unknown>,
  hlc: HlcClock,
): SqlStatement[] {
  if (typeof patch !== "object" || patch === null) {
    throw new TypeError(`Update of ${info.name} expects an object, got ${typeof patch}`);
  }
  assertKnownColumns(info, patch, NOTHING);
  const sets: Sql[] = [];
  const changed: string[] = [];
  for (const [name, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    const column = info.byName.get(name)!;
    const encoded = encodeValue(info.name, name, column.kind, value);
    if (encoded === null && column.notNull) throw notNullError(info, name);
    sets.push(sql`${id(name)} = ${encoded}`);
    changed.push(name);
  }
  const table = id(info.name);
  if (!info.synced) {
    if (sets.length === 0) throw new TypeError(`Update of ${info.name} needs at least one column`);
    return [
      sql`UPDATE ${table} SET ${join(sets, ", ")} WHERE ${id(info.key)} = ${key}
        RETURNING ${raw(info.selectList)}`,
    ];
  }
  // Nothing to change: no new version, no outbox entry (a version that
  // changes no column would be stale everywhere else).
  if (changed.length === 0) return [];
  const version = hlc.now();
  sets.push(sql`system_version = ${version}`);
  if (info.perColumn) sets.push(columnVersionsSet(changed, version));
  const rowId = String(key);
  return [
    sql`UPDATE ${table} SET ${join(sets, ", ")} WHERE system_id = ${rowId} AND is_deleted = 0
      RETURNING ${raw(info.selectList)}`,
    recordIfChangedStatement(info.name, rowId, version),
  ];
}

/** The statements of a delete: a tombstone for synced tables, a plain DELETE otherwise. */
export function prepareDelete(
  info: TableInfo,
  key: string | number,
  hlc: HlcClock,
): SqlStatement[] {
  const table = id(info.name);
  if (!info.synced) return [sql`DELETE FROM ${table} WHERE ${id(info.key)} = ${key}`];
  const version = hlc.now();
  const rowId = String(key);
  const perColumn = info.perColumn ? sql`, ${columnVersionsSet(["is_deleted"], version)}` : empty;
  return [
    sql`UPDATE ${table} SET is_deleted = 1, system_version = ${version}${perColumn}
      WHERE system_id = ${rowId} AND is_deleted = 0`,
    recordIfChangedStatement(info.name, rowId, version),
  ];
}

// Sets the version of each of `columns` in the row's column-version map.
function columnVersionsSet(columns: readonly string[], version: string): Sql {
  const paths = columns.map((name) => sql`${raw(`'$.${name}'`)}, ${version}`);
  const cv = id(COLUMN_VERSIONS);
  return sql`${cv} = json_set(${cv}, ${join(paths, ", ")})`;
}

function assertKnownColumns(
  info: TableInfo,
  values: Record<string, unknown>,
  allowed: readonly string[],
): void {
  for (const name of Object.keys(values)) {
    if (!info.byName.has(name) && !allowed.includes(name)) {
      throw new SyncError("unknown_column", `Unknown column ${name} in table ${info.name}`, {
        details: { table: info.name, column: name },
      });
    }
  }
}

function notNullError(info: TableInfo, column: string): SyncError {
  return new SyncError(
    "invalid_value",
    `Invalid value for ${info.name}.${column}: the column is notNull, got null`,
    { details: { table: info.name, column } },
  );
}
