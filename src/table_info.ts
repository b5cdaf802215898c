/**
 * What the core needs to know about one declared table, computed once per
 * database: quoted names, the key column, SQL fragments, and the value codec
 * (validation on the way in, decoding on the way out).
 *
 * Identifiers in SQL come only from here, so only from the schema; values are
 * always bound as arguments.
 *
 * @module
 */

import type { SqlValue } from "./adapter.ts";
import { quoteId } from "./sql.ts";
import { SyncError } from "./errors.ts";
import { isWellFormed, jsonValueProblem, MAX_JSON_LENGTH } from "./values.ts";
import {
  COLUMN_VERSIONS,
  type ColumnKind,
  type Columns,
  SYSTEM_COLUMNS,
  type TableDef,
} from "./schema.ts";

export { quoteId } from "./sql.ts";

/** A declared column, ready for SQL. */
export interface ColumnInfo {
  /** Column name. */
  readonly name: string;
  /** Quoted name. */
  readonly quoted: string;
  /** Storage kind. */
  readonly kind: ColumnKind;
  /** Refuses NULL. */
  readonly notNull: boolean;
  /** Declared default, already encoded for SQL (`undefined` when none). */
  readonly encodedDefault: SqlValue | undefined;
  /** Primary key of a local-only table. */
  readonly primaryKey: boolean;
  /** Position among the declared columns. */
  readonly index: number;
}

/** A declared table, ready for SQL. */
export interface TableInfo {
  /** Table name. */
  readonly name: string;
  /** Quoted name. */
  readonly quoted: string;
  /** Declared columns, in declaration order. */
  readonly columns: readonly ColumnInfo[];
  /** Declared columns by name. */
  readonly byName: ReadonlyMap<string, ColumnInfo>;
  /** True for synced tables. */
  readonly synced: boolean;
  /** True for `lww: "column"` tables. */
  readonly perColumn: boolean;
  /** The column rows are addressed by: `system_id`, a declared primary key, or `rowid`. */
  readonly key: string;
  /** The select list of a row as the API returns it. */
  readonly selectList: string;
  /** The declaration. */
  readonly def: TableDef;
}

const SQL_TYPES: Record<ColumnKind, string> = {
  text: "TEXT",
  integer: "INTEGER",
  real: "REAL",
  blob: "BLOB",
  boolean: "INTEGER",
  json: "TEXT",
};

/** The SQL type a column kind is stored as. */
export function sqlType(kind: ColumnKind): string {
  return SQL_TYPES[kind];
}

const described = new WeakMap<object, ReadonlyMap<string, TableInfo>>();

/**
 * The info of every declared table, computed once per declaration: every
 * part of the library that needs it for one schema shares one copy, and the
 * SQL cached per `TableInfo` is built once.
 */
export function describeTables(
  tables: Readonly<Record<string, TableDef>>,
): ReadonlyMap<string, TableInfo> {
  let infos = described.get(tables);
  if (infos === undefined) {
    const computed = new Map<string, TableInfo>();
    for (const [name, def] of Object.entries(tables)) computed.set(name, describeTable(name, def));
    described.set(tables, infos = computed);
  }
  return infos;
}

function describeTable(name: string, def: TableDef): TableInfo {
  const columns = Object.entries(def.columns as Columns).map((
    [columnName, col],
    index,
  ): ColumnInfo => ({
    name: columnName,
    quoted: quoteId(columnName),
    kind: col.kind,
    notNull: col.isNotNull,
    encodedDefault: col.hasDefault
      ? encodeValue(name, columnName, col.kind, col.defaultValue)
      : undefined,
    primaryKey: col.isPrimaryKey,
    index,
  }));
  const synced = def.withSystemColumns;
  const key = synced ? "system_id" : columns.find((c) => c.primaryKey)?.name ?? "rowid";
  const selected = [
    ...columns.map((c) => c.quoted),
    ...(synced ? SYSTEM_COLUMNS.map(quoteId) : []),
  ];
  return {
    name,
    quoted: quoteId(name),
    columns,
    byName: new Map(columns.map((c) => [c.name, c])),
    synced,
    perColumn: synced && def.lww === "column",
    key,
    selectList: selected.join(", "),
    def,
  };
}

/**
 * A column the core does not declare but a role adds to every synced table
 * (the server's change sequence): its name and its SQL definition.
 */
export interface ExtraColumn {
  /** Column name. */
  readonly name: string;
  /** Type and constraints, as after the name in CREATE TABLE. */
  readonly definition: string;
}

/** The CREATE TABLE statement of a table, with `extra` columns after the system columns. */
export function createTableSql(info: TableInfo, extra: readonly ExtraColumn[] = []): string {
  const defs = info.columns.map((c) => columnDefinitionSql(c));
  if (info.synced) {
    defs.push(
      `"system_id" TEXT PRIMARY KEY NOT NULL`,
      `"system_version" TEXT NOT NULL`,
      `"system_created_at" TEXT NOT NULL`,
      `"is_deleted" INTEGER NOT NULL DEFAULT 0`,
    );
    if (info.perColumn) defs.push(`${quoteId(COLUMN_VERSIONS)} TEXT NOT NULL DEFAULT '{}'`);
  }
  for (const column of extra) defs.push(`${quoteId(column.name)} ${column.definition}`);
  return `CREATE TABLE ${info.quoted} (${defs.join(", ")})`;
}

/** The definition of one column, as in CREATE TABLE and ALTER TABLE ADD COLUMN. */
export function columnDefinitionSql(column: ColumnInfo): string {
  let sql = `${column.quoted} ${sqlType(column.kind)}`;
  if (column.primaryKey) sql += " PRIMARY KEY";
  if (column.notNull) sql += " NOT NULL";
  if (column.encodedDefault !== undefined) sql += ` DEFAULT ${sqlLiteral(column.encodedDefault)}`;
  return sql;
}

// Defaults are the only values written as literals (DDL takes no parameters);
// they come from the schema, never from user input at run time.
function sqlLiteral(value: SqlValue): string {
  if (value === null) return "NULL";
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  if (typeof value === "boolean") return value ? "1" : "0";
  if (typeof value === "string") return `'${value.replaceAll("'", "''")}'`;
  const bytes = value instanceof Uint8Array ? value : new Uint8Array(value);
  return `X'${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}'`;
}

/**
 * Validates and encodes one value for SQL.
 *
 * @throws {SyncError} `invalid_value` naming table, column and value.
 */
export function encodeValue(
  table: string,
  column: string,
  kind: ColumnKind,
  value: unknown,
): SqlValue {
  if (value === null) return null;
  switch (kind) {
    case "text":
      if (typeof value === "string") {
        if (isWellFormed(value)) return value;
        throw refused(table, column, "the string holds a lone surrogate (it has no UTF-8 form)");
      }
      break;
    case "integer":
      // Safe integers only: larger ones would come back rounded from JSON and
      // from libSQL's number mode, and the wire protocol refuses them.
      if (typeof value === "number" && Number.isSafeInteger(value)) return value;
      if (
        typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER) &&
        value >= BigInt(Number.MIN_SAFE_INTEGER)
      ) {
        return Number(value);
      }
      break;
    case "real":
      if (typeof value === "number" && Number.isFinite(value)) return value;
      break;
    case "boolean":
      if (typeof value === "boolean") return value ? 1 : 0;
      if (value === 0 || value === 1) return value;
      break;
    case "blob":
      if (value instanceof Uint8Array) return value;
      if (value instanceof ArrayBuffer) return new Uint8Array(value);
      break;
    case "json":
      return encodeJson(table, column, value);
  }
  throw new SyncError(
    "invalid_value",
    `Invalid value for ${table}.${column}: expected ${EXPECTED[kind]}, got ${describe(value)}`,
    { details: { table, column } },
  );
}

const EXPECTED: Record<ColumnKind, string> = {
  text: "a string",
  integer: "a safe integer (|n| ≤ 2^53 - 1)",
  real: "a finite number",
  boolean: "a boolean",
  blob: "a Uint8Array",
  json: "a JSON value",
};

function encodeJson(table: string, column: string, value: unknown): string {
  const problem = value === undefined ? undefined : jsonValueProblem(value);
  if (problem !== undefined) throw refused(table, column, problem);
  let encoded: string | undefined;
  try {
    encoded = JSON.stringify(value);
  } catch (cause) {
    throw new SyncError("invalid_value", `Invalid value for ${table}.${column}: not JSON`, {
      cause,
      details: { table, column },
    });
  }
  if (encoded === undefined) {
    throw refused(table, column, `expected a JSON value, got ${describe(value)}`);
  }
  if (encoded.length > MAX_JSON_LENGTH) {
    throw refused(table, column, `the JSON text is longer than ${MAX_JSON_LENGTH} characters`);
  }
  return encoded;
}

function refused(table: string, column: string, why: string): SyncError {
  return new SyncError("invalid_value", `Invalid value for ${table}.${column}: ${why}`, {
    details: { table, column },
  });
}

/** Decodes one stored value to its column's JavaScript type. */
export function decodeValue(kind: ColumnKind, value: SqlValue): unknown {
  if (value === null || value === undefined) return null;
  switch (kind) {
    case "boolean":
      return value !== 0 && value !== 0n && value !== false;
    case "json":
      return typeof value === "string" ? JSON.parse(value) : value;
    case "blob":
      return value instanceof ArrayBuffer ? new Uint8Array(value) : value;
    case "integer":
    case "real":
      return typeof value === "bigint" ? Number(value) : value;
    default:
      return value;
  }
}

/** Decodes a stored row (selected with `selectList`) into the API's row object. */
export function decodeRow(info: TableInfo, raw: Record<string, SqlValue>): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  for (const column of info.columns) row[column.name] = decodeValue(column.kind, raw[column.name]!);
  if (info.synced) {
    row.system_id = raw.system_id;
    row.system_version = raw.system_version;
    row.system_created_at = raw.system_created_at;
    row.is_deleted = Number(raw.is_deleted);
  }
  return row;
}

function describe(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value);
  }
  if (typeof value === "bigint") return `${value}n`;
  if (value === undefined || typeof value === "number" || typeof value === "boolean") {
    return String(value);
  }
  return value instanceof Uint8Array ? "a Uint8Array" : typeof value;
}
