/**
 * Scopes: a table that declares a `scope` column belongs row by row to
 * principals. A principal pulls only the rows whose scope column holds its
 * id, and may write only such rows: a pushed row must carry its id, and a
 * stored row under another scope cannot be changed (which would also move it
 * out of its owner's scope). Without a principal (no `authorize`), or on a
 * table without a scope column, nothing is enforced.
 *
 * Ids are compared inside SQL: a stored id never makes a round trip through
 * a driver that could alter it on the way.
 *
 * @example
 * ```ts
 * const message = scopeViolation(info, row, principal); // undefined when the row is the principal's
 * const [result] = await adapter.batch([othersStatement(info, ["a", "b"], principal)!]);
 * const foreign = rowsOfOthers(result); // positions: Set { 1 }
 * const filter = scopeFilter(info, principal); // sql` AND "owner" = ${principal.id}`
 * ```
 *
 * @module
 */

import {
  empty,
  id,
  type NormalizedRow,
  type Sql,
  sql,
  type SqlResult,
  type TableInfo,
} from "../src/internal.ts";

/** Who is asking: the result of `authorize`. Its `id` is matched against scope columns. */
export interface Principal {
  /** The principal's id; rows of a scoped table belong to the principal whose id they hold. */
  readonly id: string;
}

/** A scope held to: the table's scope column and the principal whose id it must hold. */
export interface EnforcedScope {
  /** The table's scope column. */
  readonly column: string;
  /** Who is asking. */
  readonly principal: Principal;
}

/** The scope `principal` is held to on `info`, or `undefined` where nothing is enforced. */
export function enforcedScope(
  info: TableInfo,
  principal: Principal | undefined,
): EnforcedScope | undefined {
  const column = info.def.scope;
  return column === undefined || principal === undefined ? undefined : { column, principal };
}

/**
 * Why `principal` may not push `row`: it does not carry the principal's id
 * in the scope column. `undefined` when it may.
 */
export function scopeViolation(
  info: TableInfo,
  row: NormalizedRow,
  principal: Principal | undefined,
): string | undefined {
  const scope = enforcedScope(info, principal);
  if (scope === undefined) return undefined;
  const column = info.byName.get(scope.column)!;
  if (row.values[column.index] === scope.principal.id) return undefined;
  return `Row ${row.id} of ${info.name} must have ${column.name} = ${scope.principal.id}`;
}

/**
 * The query finding which of `ids` are stored under another principal's
 * scope, answering their positions as one JSON array (read it with
 * {@linkcode rowsOfOthers}); `undefined` where the scope is not enforced.
 */
export function othersStatement(
  info: TableInfo,
  ids: readonly string[],
  principal: Principal | undefined,
): Sql | undefined {
  const scope = enforcedScope(info, principal);
  if (scope === undefined) return undefined;
  return sql`SELECT json_group_array(j.key) AS foreign_rows FROM json_each(${JSON.stringify(ids)}) j
    JOIN ${id(info.name)} t ON t.system_id = j.value
    WHERE t.${id(scope.column)} IS NOT ${scope.principal.id}`;
}

/** The positions {@linkcode othersStatement}'s result names. */
export function rowsOfOthers(result: SqlResult): Set<number> {
  return new Set(JSON.parse(String(result.rows[0]?.foreign_rows ?? "[]")) as number[]);
}

/** Why a row {@linkcode othersStatement} found cannot be written. */
export function othersRowMessage(info: TableInfo, rowId: string): string {
  return `Row ${rowId} of ${info.name} belongs to another scope`;
}

/** The condition a pull adds to see only the principal's rows: ` AND <scope> = ?`, or nothing. */
export function scopeFilter(info: TableInfo, principal: Principal | undefined): Sql {
  const scope = enforcedScope(info, principal);
  return scope === undefined ? empty : sql` AND ${id(scope.column)} = ${scope.principal.id}`;
}
