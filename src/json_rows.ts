/**
 * Many rows in one statement, bound as a single JSON argument and read back
 * with `json_each`: `INSERT INTO t (a, b) SELECT value ->> 0, value ->> 1 FROM
 * json_each(?) WHERE true`.
 *
 * Compared with a multi-row `VALUES` list this keeps the SQL text the same for
 * every chunk, so SQLite compiles a small program instead of one that grows
 * with the row count, and libSQL holds far less native memory per statement.
 * JSON has no bytes and no 64-bit integers: blobs travel as hex (read back
 * with `unhex`), bigints as decimal strings (the column's INTEGER affinity
 * turns them back into integers).
 *
 * @module
 */

import type { SqlValue } from "./adapter.ts";
import type { ColumnKind } from "./schema.ts";

const HEX: readonly string[] = Array.from(
  { length: 256 },
  (_, i) => i.toString(16).padStart(2, "0"),
);

/** A value as it travels inside the JSON argument. */
export function toJsonValue(value: SqlValue): string | number | boolean | null {
  if (value === null || typeof value !== "object") {
    return typeof value === "bigint" ? value.toString() : value;
  }
  const bytes = value instanceof Uint8Array ? value : new Uint8Array(value);
  let hex = "";
  for (let i = 0; i < bytes.length; i++) hex += HEX[bytes[i]!];
  return hex;
}

/** The expression reading element `index` of a `json_each` row as a value of `kind`. */
function jsonElement(index: number, kind?: ColumnKind): string {
  return kind === "blob" ? `unhex(value ->> ${index})` : `value ->> ${index}`;
}

/** The select list reading `kinds.length` elements of a `json_each` row, in order. */
export function jsonSelectList(kinds: readonly (ColumnKind | undefined)[]): string {
  return kinds.map((kind, index) => jsonElement(index, kind)).join(", ");
}
