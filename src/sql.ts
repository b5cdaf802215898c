/**
 * A tagged template for the library's own SQL: every value stays beside the
 * `?` it binds, and identifiers or fragments are spliced in only when they
 * are marked as SQL.
 *
 * ```ts
 * const statement = sql`SELECT * FROM ${id(table)} WHERE seq > ${after} LIMIT ${limit}`;
 * // { sql: 'SELECT * FROM "tasks" WHERE seq > ? LIMIT ?', args: [after, limit] }
 * ```
 *
 * An interpolated {@linkcode SqlValue} becomes a `?` and an argument; an
 * interpolated {@linkcode Sql} (from `sql`, {@linkcode id}, {@linkcode raw}
 * or {@linkcode join}) is inlined with its own arguments, in place. Nothing
 * else is accepted, so a value can never be read as SQL text. Identifiers
 * come from the schema only (`id` quotes them); `raw` is for SQL the library
 * builds from the schema, never for input.
 *
 * @module
 */

import type { SqlStatement, SqlValue } from "./adapter.ts";

/** A piece of SQL with the arguments of its placeholders, in order. */
export class Sql implements SqlStatement {
  /** The SQL text with `?` placeholders. */
  readonly sql: string;
  /** One argument per placeholder. */
  readonly args: readonly SqlValue[];

  /** Use {@linkcode sql}, {@linkcode id}, {@linkcode raw} or {@linkcode join}. */
  constructor(sql: string, args: readonly SqlValue[]) {
    this.sql = sql;
    this.args = args;
  }
}

/** What a template may interpolate: a bound value, or SQL. */
export type SqlPart = SqlValue | Sql;

/** Builds a statement from a template; see the module doc. */
export function sql(strings: TemplateStringsArray, ...parts: readonly SqlPart[]): Sql {
  let text = strings[0]!;
  const args: SqlValue[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part instanceof Sql) {
      text += part.sql;
      for (const arg of part.args) args.push(arg);
    } else {
      text += "?";
      args.push(part);
    }
    text += strings[i + 1]!;
  }
  return new Sql(text, args);
}

/** Quotes an SQL identifier (a table or column name from the schema), as text. */
export function quoteId(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A quoted identifier (a table or column name from the schema). */
export function id(name: string): Sql {
  return new Sql(quoteId(name), []);
}

/** SQL text the library built from the schema, with no arguments. Never for input. */
export function raw(text: string): Sql {
  return new Sql(text, []);
}

/** Fragments joined by `separator` (SQL text), their arguments in order. */
export function join(parts: readonly Sql[], separator: string): Sql {
  const args: SqlValue[] = [];
  for (const part of parts) for (const arg of part.args) args.push(arg);
  return new Sql(parts.map((part) => part.sql).join(separator), args);
}

/** The empty fragment: for an optional clause, `cond ? sql\`AND …\` : empty`. */
export const empty: Sql = new Sql("", []);
