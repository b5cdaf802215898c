/**
 * Rows in and out of SQLite as JSON.
 *
 * In: many rows in one statement, bound as a single JSON argument and read
 * back with `json_each`: `INSERT INTO t (a, b) SELECT value ->> 0, value ->> 1
 * FROM json_each(?) WHERE true`.
 *
 * Compared with a multi-row `VALUES` list this keeps the SQL text the same for
 * every chunk, so SQLite compiles a small program instead of one that grows
 * with the row count, and libSQL holds far less native memory per statement.
 * JSON has no bytes and no 64-bit integers: blobs travel as hex (read back
 * with `unhex`), bigints as decimal strings (the column's INTEGER affinity
 * turns them back into integers). Reals travel as strings of 17 significant
 * digits read back with `CAST(… AS REAL)`: SQLite turns such a string into
 * the very same double, while the shortest form JavaScript writes comes back
 * off by one unit in the last place for some values.
 *
 * Out: a row's declared columns as one JSON object built by SQLite
 * (`dataJsonSql`, the shape of pull pages), so a page of rows is one value to
 * parse, not a result row per row to convert. SQLite's JSON writes reals with
 * 15 significant digits, which loses precision; real columns go out through
 * `printf('%!.17g')` instead (`realJsonSql`), which JavaScript parses back
 * to the stored double exactly.
 *
 * @module
 */

import type { SqlValue } from "./adapter.ts";
import type { ColumnKind } from "./schema.ts";
import type { TableInfo } from "./table_info.ts";
import { toHex } from "./wire.ts";

/**
 * A value as it travels inside the JSON argument (`kind`: the column's, if
 * any). A blob is bytes, or hex text already (a push's, see `normalize.ts`).
 */
export function toJsonValue(value: SqlValue, kind?: ColumnKind): string | number | boolean | null {
  if (kind === "real" && typeof value === "number") return value.toPrecision(17);
  if (value === null || typeof value !== "object") {
    return typeof value === "bigint" ? value.toString() : value;
  }
  return toHex(value instanceof Uint8Array ? value : new Uint8Array(value));
}

/** The expression reading element `index` of a `json_each` row as a value of `kind`. */
function jsonElement(index: number, kind?: ColumnKind): string {
  if (kind === "blob") return `unhex(value ->> ${index})`;
  if (kind === "real") return `CAST(value ->> ${index} AS REAL)`;
  return `value ->> ${index}`;
}

/** The select list reading `kinds.length` elements of a `json_each` row, in order. */
export function jsonSelectList(kinds: readonly (ColumnKind | undefined)[]): string {
  return kinds.map((kind, index) => jsonElement(index, kind)).join(", ");
}

/** A SQL string literal. */
function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** A blob as hex text, and NULL as NULL (SQLite's `hex(NULL)` is ''). */
export function blobHexSql(sql: string): string {
  return `CASE WHEN ${sql} IS NULL THEN NULL ELSE hex(${sql}) END`;
}

/** A stored real as a JSON number with every digit it needs (17 significant). */
export function realJsonSql(sql: string): string {
  return `CASE WHEN typeof(${sql}) = 'real' THEN json(printf('%!.17g', ${sql})) ELSE ${sql} END`;
}

/** A stored 0/1 (or NULL) as a JSON boolean (or null). */
export function jsonBooleanSql(sql: string): string {
  return `CASE WHEN ${sql} IS NULL THEN NULL WHEN ${sql} THEN json('true') ELSE json('false') END`;
}

/**
 * The declared columns of a row as a JSON object, as the API reads them:
 * booleans as `true`/`false`, JSON columns as their value, blobs as hex
 * (which only JavaScript turns back into bytes: SQLite has no base64).
 */
export function dataJsonSql(info: TableInfo): string {
  const entries = info.columns.map((column) => {
    const c = column.quoted;
    const value = column.kind === "boolean"
      ? jsonBooleanSql(c)
      : column.kind === "json"
      ? `json(${c})`
      : column.kind === "blob"
      ? blobHexSql(c)
      : column.kind === "real"
      ? realJsonSql(c)
      : c;
    return `${sqlString(column.name)}, ${value}`;
  });
  return `json_object(${entries.join(", ")})`;
}
