/**
 * Declarative schema: tables are declared once, in TypeScript, and everything
 * else — DDL, migrations, row types, wire validation — is derived from them.
 *
 * A table declared with `withSystemColumns: true` is synced: it gets the system
 * columns `system_id` (TEXT primary key, a UUIDv7 made on the client),
 * `system_version` (HLC of the last change), `system_created_at` (HLC of the
 * creation) and `is_deleted` (0/1 tombstone). With `lww: "column"` it also keeps
 * one version per column, so concurrent edits of different columns both survive;
 * that map lives in the hidden column `system_column_versions`.
 *
 * Other tables are local-only: plain SQLite tables, never tracked or sent.
 *
 * @example
 * ```ts
 * const schema = defineSchema({
 *   tasks: table({
 *     title: text().notNull(),
 *     done: integer().notNull().default(0),
 *     notes: text(),
 *   }, { withSystemColumns: true, lww: "row", indexes: [{ columns: ["done"] }] }),
 * });
 * type Task = RowOf<typeof schema.tables.tasks>;
 * ```
 *
 * @module
 */

/** The storage kinds of a column. `boolean` is stored as 0/1, `json` as TEXT. */
export type ColumnKind = "text" | "integer" | "real" | "blob" | "boolean" | "json";

/** A declared column. `T` is its value type; `N` whether it is `notNull`; `D` whether it has a default. */
export interface Column<T, N extends boolean = false, D extends boolean = false> {
  /** The storage kind. */
  readonly kind: ColumnKind;
  /** True when the column refuses NULL. */
  readonly isNotNull: N;
  /** True when the column has a default value. */
  readonly hasDefault: D;
  /** The default value, if any. */
  readonly defaultValue: T | undefined;
  /** True when the column is the primary key of a local-only table. */
  readonly isPrimaryKey: boolean;
  /** The same column, refusing NULL. */
  notNull(): Column<T, true, D>;
  /** The same column with a default for inserts that omit it. */
  default(value: T): Column<T, N, true>;
  /** The same column as primary key (local-only tables; synced tables are keyed by `system_id`). */
  primaryKey(): Column<T, true, D>;
}

/** A column of any value type and flags. */
// deno-lint-ignore no-explicit-any
export type AnyColumn = Column<any, boolean, boolean>;

/** The columns of a table, by name. */
export type Columns = Record<string, AnyColumn>;

/** Merge granularity of a synced table. */
export type LwwMode = "row" | "column";

/** A secondary index. */
export interface IndexDef<C extends string = string> {
  /** The indexed columns, in order. */
  readonly columns: readonly C[];
  /** A UNIQUE index. */
  readonly unique?: boolean;
  /** The index name; defaults to `<table>_<columns>_idx`. */
  readonly name?: string;
}

/** Options of {@linkcode table}. */
export interface TableOptions<C extends string = string, S extends boolean = boolean> {
  /** Sync this table: add the system columns and track every write in the outbox. */
  readonly withSystemColumns?: S;
  /** Last-write-wins per whole row (default) or per column. */
  readonly lww?: LwwMode;
  /** Secondary indexes. */
  readonly indexes?: readonly IndexDef<C>[];
  /** A column holding the owner of each row; the sync server filters by it. */
  readonly scope?: C;
}

/** A declared table. */
export interface TableDef<C extends Columns = Columns, S extends boolean = boolean> {
  /** The declared columns (system columns excluded). */
  readonly columns: C;
  /** True for synced tables. */
  readonly withSystemColumns: S;
  /** Merge granularity. */
  readonly lww: LwwMode;
  // Column names are checked where the table is declared (`TableOptions`);
  // here they are plain strings so that TableDef stays covariant in C.
  /** Secondary indexes. */
  readonly indexes: readonly IndexDef[];
  /** The scope column, if any. */
  readonly scope: string | undefined;
}

/** A schema: the declared tables, and hashes that change whenever they do. */
export interface Schema<T extends Record<string, TableDef> = Record<string, TableDef>> {
  /** The tables, by name. */
  readonly tables: T;
  /**
   * A stable hash of the synced tables' declarations, sent by the sync
   * protocol: a client and a server agree exactly when their synced tables
   * do. Local-only tables are each side's own and do not count.
   */
  readonly hash: string;
  /**
   * A stable hash of every declaration, local-only tables included, stored
   * by a migrated database: a change to any table migrates it.
   */
  readonly migrationHash: string;
}

/** The value type of a column. */
export type ValueOf<Col> = Col extends Column<infer T, infer N, boolean>
  ? N extends true ? T : T | null
  : never;

/** The system columns of a synced row. */
export interface SystemColumns {
  /** Primary key: a time-sortable id made on the client. */
  system_id: string;
  /** HLC of the last change. */
  system_version: string;
  /** HLC of the creation. */
  system_created_at: string;
  /** 1 for a tombstone, 0 otherwise. */
  is_deleted: number;
}

/** `T` with its intersections flattened, so editors show one object type. */
export type Simplify<T> = { [K in keyof T]: T[K] } & unknown;

/** The names of the system columns, in storage order. */
export const SYSTEM_COLUMNS = [
  "system_id",
  "system_version",
  "system_created_at",
  "is_deleted",
] as const;
/** The hidden per-column version map of `lww: "column"` tables. */
export const COLUMN_VERSIONS = "system_column_versions";

/** A row of a table as read back: declared columns plus, for synced tables, the system columns. */
export type RowOf<T> = T extends TableDef<infer C, infer S> ? Simplify<
    & { [K in keyof C]: ValueOf<C[K]> }
    & (S extends true ? SystemColumns : unknown)
  >
  : never;

/** The columns an insert must give: `notNull` ones without a default. */
export type RequiredKeys<C> = {
  [K in keyof C]: C[K] extends Column<unknown, true, false> ? K : never;
}[keyof C];
/** The columns an insert may leave out. */
export type OptionalKeys<C> = Exclude<keyof C, RequiredKeys<C>>;

/** The values accepted by `insert`: required `notNull` columns without default, the rest optional. */
export type InsertOf<T> = T extends TableDef<infer C, infer S> ? Simplify<
    & { [K in RequiredKeys<C>]: ValueOf<C[K]> }
    & { [K in OptionalKeys<C>]?: ValueOf<C[K]> }
    & (S extends true ? { system_id?: string } : unknown)
  >
  : never;

/** The values accepted by `update`: any subset of the declared columns. */
export type PatchOf<T> = T extends TableDef<infer C, boolean>
  ? Simplify<{ [K in keyof C]?: ValueOf<C[K]> }>
  : never;

function column<T>(kind: ColumnKind): Column<T> {
  const make = (
    isNotNull: boolean,
    hasDefault: boolean,
    defaultValue: unknown,
    isPrimaryKey: boolean,
    // The builder's type parameters are phantom: one runtime shape serves them all.
  ): AnyColumn => ({
    kind,
    isNotNull,
    hasDefault,
    defaultValue,
    isPrimaryKey,
    notNull: () => make(true, hasDefault, defaultValue, isPrimaryKey) as never,
    default: (value: unknown) => {
      if (value === undefined) throw new TypeError("A column default cannot be undefined");
      return make(isNotNull, true, value, isPrimaryKey) as never;
    },
    primaryKey: () => make(true, hasDefault, defaultValue, true) as never,
  } as AnyColumn);
  return make(false, false, undefined, false) as Column<T>;
}

/** A TEXT column. */
export function text(): Column<string> {
  return column<string>("text");
}
/** An INTEGER column (a JavaScript number). */
export function integer(): Column<number> {
  return column<number>("integer");
}
/** A REAL column. */
export function real(): Column<number> {
  return column<number>("real");
}
/** A BLOB column (a `Uint8Array`). */
export function blob(): Column<Uint8Array> {
  return column<Uint8Array>("blob");
}
/** A boolean column, stored as 0/1. */
export function boolean(): Column<boolean> {
  return column<boolean>("boolean");
}
/** A JSON column, stored as TEXT; `T` is the type of the parsed value. */
export function json<T = unknown>(): Column<T> {
  return column<T>("json");
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * Declares a table.
 *
 * @param columns the declared columns; names are SQL identifiers and may not
 * start with `system_`, nor be `is_deleted` (reserved for the system columns)
 * @param options sync, merge granularity, indexes and scope
 */
export function table<C extends Columns, const S extends boolean = false>(
  columns: C,
  options: TableOptions<keyof C & string, S> = {},
): TableDef<C, S> {
  const synced = options.withSystemColumns === true;
  checkColumns(columns, synced);
  const lww = options.lww ?? "row";
  if (lww !== "row" && lww !== "column") {
    throw new TypeError(`Invalid lww mode ${JSON.stringify(lww)}: use "row" or "column"`);
  }
  if (options.lww !== undefined && !synced) {
    throw new TypeError("lww applies to synced tables: set withSystemColumns: true");
  }
  for (const index of options.indexes ?? []) checkIndex(index, columns, synced);
  if (options.scope !== undefined) {
    const scope = columns[options.scope];
    if (scope === undefined) throw new TypeError(`Scope column ${options.scope} is not declared`);
    if (!synced) throw new TypeError("A scope applies to synced tables");
  }
  return {
    columns,
    withSystemColumns: synced as S,
    lww,
    indexes: options.indexes ?? [],
    scope: options.scope,
  };
}

function checkColumns(columns: Columns, synced: boolean): void {
  const names = Object.keys(columns);
  if (names.length === 0) throw new TypeError("A table needs at least one column");
  assertDistinctIgnoringCase("column", names);
  for (const name of names) {
    if (!IDENTIFIER.test(name)) {
      throw new TypeError(`Invalid column name ${JSON.stringify(name)}: use a SQL identifier`);
    }
    if (name.startsWith("system_") || name === "is_deleted") {
      throw new TypeError(`Column name ${name} is reserved for the system columns`);
    }
    const col = columns[name]!;
    if (col.hasDefault && col.defaultValue === null && col.isNotNull) {
      throw new TypeError(`Column ${name} is notNull but defaults to null`);
    }
    if (synced && col.isPrimaryKey) {
      throw new TypeError(
        `Column ${name}: synced tables are keyed by system_id and cannot declare a primary key`,
      );
    }
  }
  if (names.filter((name) => columns[name]!.isPrimaryKey).length > 1) {
    throw new TypeError("A table can declare one primary key column");
  }
}

function checkIndex(index: IndexDef, columns: Columns, synced: boolean): void {
  if (index.columns.length === 0) throw new TypeError("An index needs at least one column");
  for (const name of index.columns) {
    if (!(name in columns) && !(SYSTEM_COLUMNS as readonly string[]).includes(name)) {
      throw new TypeError(`Index column ${name} is not declared`);
    }
  }
  // Two offline replicas could each accept a row the other's unique index
  // refuses, and no merge could reconcile them (cr-sqlite forbids unique
  // indexes on replicated tables for the same reason). A server may still
  // add its own constraints: what they refuse comes back as `rejected`.
  if (index.unique && synced) {
    throw new TypeError(
      `Unique index on ${index.columns.join(", ")}: synced tables cannot have unique indexes, ` +
        "as offline replicas could not merge rows that violate them",
    );
  }
  if (index.name !== undefined && !IDENTIFIER.test(index.name)) {
    throw new TypeError(`Invalid index name ${JSON.stringify(index.name)}`);
  }
}

/**
 * Declares a schema: the tables of a database, by name.
 *
 * @throws {TypeError} for a table name that is not a SQL identifier or starts with
 * `_` or `sqlite_` (reserved for the library and SQLite).
 */
export function defineSchema<const T extends Record<string, TableDef>>(tables: T): Schema<T> {
  assertDistinctIgnoringCase("table", Object.keys(tables));
  for (const name of Object.keys(tables)) {
    if (
      !IDENTIFIER.test(name) || name.startsWith("_") || name.toLowerCase().startsWith("sqlite_")
    ) {
      throw new TypeError(
        `Invalid table name ${
          JSON.stringify(name)
        }: use a SQL identifier not starting with _ or sqlite_`,
      );
    }
  }
  const synced = Object.fromEntries(
    Object.entries(tables).filter(([, table]) => table.withSystemColumns),
  );
  return {
    tables,
    hash: hashString(canonicalSchema(synced)),
    migrationHash: hashString(canonicalSchema(tables)),
  };
}

// SQL identifiers are case-insensitive: `Title` and `title` are one column.
function assertDistinctIgnoringCase(kind: string, names: readonly string[]): void {
  const seen = new Map<string, string>();
  for (const name of names) {
    const other = seen.get(name.toLowerCase());
    if (other !== undefined) {
      throw new TypeError(`The ${kind} names ${other} and ${name} differ only in case`);
    }
    seen.set(name.toLowerCase(), name);
  }
}

/** The name of an index of a table. */
export function indexName(tableName: string, index: IndexDef): string {
  return index.name ?? `${tableName}_${index.columns.join("_")}_idx`;
}

function canonicalSchema(tables: Record<string, TableDef>): string {
  const describe = Object.keys(tables).sort().map((name) => {
    const t = tables[name]!;
    return [
      name,
      t.withSystemColumns,
      t.lww,
      t.scope ?? null,
      Object.keys(t.columns).sort().map((c) => {
        const col = t.columns[c]!;
        return [c, col.kind, col.isNotNull, col.hasDefault, encodeDefault(col.defaultValue)];
      }),
      t.indexes.map((i) => [indexName(name, i), i.columns, i.unique === true]),
    ];
  });
  return JSON.stringify(describe);
}

function encodeDefault(value: unknown): unknown {
  return value instanceof Uint8Array ? Array.from(value) : value ?? null;
}

// cyrb53: a fast 53-bit string hash; collisions only matter between two
// versions of one schema, where 53 bits are plenty.
function hashString(input: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < input.length; i++) {
    const ch = input.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, "0");
}
