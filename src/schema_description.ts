/**
 * A schema as data, and what two of them differ in.
 *
 * {@linkcode describeSchema} turns the table declarations into a JSON-safe
 * description made of exactly what the schema hash is computed from: per
 * table its name, whether it is synced, its merge granularity, its scope
 * column, its columns (kind, notNull, default, primary key) and its indexes
 * (name, columns, unique). {@linkcode compareSchemas} lists, in words, how two
 * descriptions differ: "table notes: the server has column color (text), the
 * client does not".
 *
 * Both ends use it. The sync endpoint answers `GET <base>/schema` with the
 * description of its synced tables ({@linkcode SchemaResponse}). When the
 * server refuses a push or a pull with `409 schema_mismatch`, the HTTP
 * transport reads that answer and throws, instead of "two hashes differ", an
 * error naming the tables and columns that differ and how to fix it
 * ({@linkcode explainSchemaMismatch}).
 *
 * Local-only tables are left out of a description unless asked for: what a
 * client keeps to itself is not the server's business, and the schema hash
 * both ends compare does not count them either.
 *
 * Tables, columns and indexes are lists of named entries, sorted as the hash
 * sorts them, rather than objects keyed by name: a table may be called
 * `constructor` and a column `toString`, and a list has no prototype for a
 * name to collide with.
 *
 * @example
 * ```ts
 * const answer = await (await fetch("http://127.0.0.1:8787/schema")).json();
 * for (const difference of compareSchemas(describeSchema(schema), answer.tables)) {
 *   console.log(difference.message); // table tasks: column done is integer on the client, text on the server
 * }
 * ```
 *
 * @module
 */

import * as v from "valibot";
import { SyncError } from "./errors.ts";
import { PROTOCOL_VERSION } from "./protocol.ts";
import { type ColumnKind, indexName, type LwwMode, type Schema, type TableDef } from "./schema.ts";

/** A column, as {@linkcode describeSchema} describes it. */
export interface ColumnDescription {
  /** The column name. */
  readonly name: string;
  /** The storage kind. */
  readonly kind: ColumnKind;
  /** True when the column refuses NULL. */
  readonly notNull: boolean;
  /** True for the primary key of a local-only table. */
  readonly primaryKey: boolean;
  /**
   * The default, as JSON (a blob's bytes as an array of numbers); the key is
   * present only when the column has one, so a default of `null` is told
   * apart from none.
   */
  readonly default?: unknown;
}

/** A secondary index, as {@linkcode describeSchema} describes it. */
export interface IndexDescription {
  /** The index name (`<table>_<columns>_idx` unless declared). */
  readonly name: string;
  /** The indexed columns, in order. */
  readonly columns: readonly string[];
  /** True for a UNIQUE index. */
  readonly unique: boolean;
}

/** A table, as {@linkcode describeSchema} describes it. */
export interface TableDescription {
  /** The table name. */
  readonly name: string;
  /** True for a synced table (`withSystemColumns: true`). */
  readonly synced: boolean;
  /** Merge granularity. */
  readonly lww: LwwMode;
  /** The scope column, or null. */
  readonly scope: string | null;
  /** The declared columns (system columns excluded), sorted by name. */
  readonly columns: readonly ColumnDescription[];
  /** The indexes, in declared order (the order counts in the schema hash). */
  readonly indexes: readonly IndexDescription[];
}

/** The tables of a schema, sorted by name: the JSON `GET /schema` answers with. */
export type SchemaDescription = readonly TableDescription[];

/** One way two schemas differ. */
export interface SchemaDifference {
  /** The table it is about. */
  readonly table: string;
  /** The column it is about, if one. */
  readonly column?: string;
  /** The index it is about, if one. */
  readonly index?: string;
  /** What differs, in a sentence: `table files: only on the client`. */
  readonly message: string;
}

/** The answer of `GET <base>/schema`: the server's protocol, schema hash and synced tables. */
export interface SchemaResponse {
  /** The protocol the server speaks. */
  readonly protocol: number;
  /** The server's schema hash, the one pushes and pulls are compared with. */
  readonly schema: string;
  /** The server's synced tables. */
  readonly tables: SchemaDescription;
}

/** Options of {@linkcode describeSchema}. */
export interface DescribeSchemaOptions {
  /** Describe local-only tables too (default false: synced tables only). */
  readonly localTables?: boolean;
}

/**
 * Describes the tables of a schema: its synced ones, or all of them with
 * `localTables`.
 *
 * @example
 * ```ts
 * describeSchema(schema)[0];
 * // { name: "notes", synced: true, lww: "column", scope: null, columns: [...], indexes: [] }
 * ```
 */
export function describeSchema(
  schema: Schema,
  options: DescribeSchemaOptions = {},
): SchemaDescription {
  // Sorted as the hash sorts its tables and columns: by UTF-16 code units.
  return Object.keys(schema.tables).sort()
    .filter((name) => options.localTables === true || schema.tables[name]!.withSystemColumns)
    .map((name) => describeTable(name, schema.tables[name]!));
}

function describeTable(name: string, table: TableDef): TableDescription {
  return {
    name,
    synced: table.withSystemColumns,
    lww: table.lww,
    scope: table.scope ?? null,
    columns: Object.keys(table.columns).sort().map((column): ColumnDescription => {
      const declared = table.columns[column]!;
      const described = {
        name: column,
        kind: declared.kind,
        notNull: declared.isNotNull,
        primaryKey: declared.isPrimaryKey,
      };
      return declared.hasDefault
        ? { ...described, default: jsonDefault(declared.defaultValue) }
        : described;
    }),
    indexes: table.indexes.map((index) => ({
      name: indexName(name, index),
      columns: [...index.columns],
      unique: index.unique === true,
    })),
  };
}

// A default as the hash encodes it: bytes as numbers, nothing as null.
function jsonDefault(value: unknown): unknown {
  return value instanceof Uint8Array ? Array.from(value) : value ?? null;
}

/**
 * How the client's description differs from the server's, one sentence per
 * difference, tables in name order: an empty list when they describe the same
 * tables.
 *
 * @param client the client's tables (`describeSchema(db.schema)`)
 * @param server the server's (`tables` of the `GET /schema` answer)
 * @example
 * ```ts
 * compareSchemas(describeSchema(mine), answer.tables).map((d) => d.message);
 * // ["table notes: the server has column color (text), the client does not",
 * //  "table files: only on the client"]
 * ```
 */
export function compareSchemas(
  client: SchemaDescription,
  server: SchemaDescription,
): SchemaDifference[] {
  const differences: SchemaDifference[] = [];
  const servers = byName(server);
  const names = [...new Set([...client.map((t) => t.name), ...server.map((t) => t.name)])].sort();
  const clients = byName(client);
  for (const name of names) {
    const ours = clients.get(name);
    const theirs = servers.get(name);
    if (ours === undefined || theirs === undefined) {
      const where = ours === undefined ? "the server" : "the client";
      differences.push({ table: name, message: `table ${name}: only on ${where}` });
    } else {
      compareTables(ours, theirs, differences);
    }
  }
  return differences;
}

function compareTables(
  client: TableDescription,
  server: TableDescription,
  out: SchemaDifference[],
): void {
  const table = client.name;
  const say = (message: string, about: { column?: string; index?: string } = {}) =>
    out.push({ table, ...about, message: `table ${table}: ${message}` });
  if (client.synced !== server.synced) {
    const kind = (synced: boolean) => (synced ? "synced" : "local-only");
    say(`${kind(client.synced)} on the client, ${kind(server.synced)} on the server`);
  }
  if (client.lww !== server.lww) {
    say(`merges per ${client.lww} on the client, per ${server.lww} on the server`);
  }
  if (client.scope !== server.scope) {
    const scope = (column: string | null) => column === null ? "not scoped" : `scoped by ${column}`;
    say(`${scope(client.scope)} on the client, ${scope(server.scope)} on the server`);
  }
  const servers = byName(server.columns);
  const clients = byName(client.columns);
  for (const column of client.columns) {
    const theirs = servers.get(column.name);
    if (theirs === undefined) {
      say(`the client has column ${describeColumn(column)}, the server does not`, {
        column: column.name,
      });
    } else {
      compareColumns(column, theirs, (message) => say(message, { column: column.name }));
    }
  }
  for (const column of server.columns) {
    if (clients.has(column.name)) continue;
    say(`the server has column ${describeColumn(column)}, the client does not`, {
      column: column.name,
    });
  }
  compareIndexes(client.indexes, server.indexes, say);
}

function compareColumns(
  client: ColumnDescription,
  server: ColumnDescription,
  say: (message: string) => void,
): void {
  const name = client.name;
  if (client.kind !== server.kind) {
    say(`column ${name} is ${client.kind} on the client, ${server.kind} on the server`);
  }
  if (client.notNull !== server.notNull) {
    const rule = (notNull: boolean) => (notNull ? "notNull" : "nullable");
    say(
      `column ${name} is ${rule(client.notNull)} on the client, ${
        rule(server.notNull)
      } on the server`,
    );
  }
  if (defaultText(client) !== defaultText(server)) {
    const says = (column: ColumnDescription) =>
      hasDefault(column) ? `defaults to ${defaultText(column)}` : "has no default";
    say(`column ${name} ${says(client)} on the client, ${says(server)} on the server`);
  }
  if (client.primaryKey !== server.primaryKey) {
    const key = (primaryKey: boolean) => (primaryKey ? "is the primary key" : "is not");
    say(
      `column ${name} ${key(client.primaryKey)} on the client, ${
        key(server.primaryKey)
      } on the server`,
    );
  }
}

function compareIndexes(
  client: readonly IndexDescription[],
  server: readonly IndexDescription[],
  say: (message: string, about: { index: string }) => void,
): void {
  const servers = byName(server);
  const clients = byName(client);
  for (const index of client) {
    const theirs = servers.get(index.name);
    if (theirs === undefined) {
      say(`the client has index ${describeIndex(index)}, the server does not`, {
        index: index.name,
      });
    } else if (describeIndex(index) !== describeIndex(theirs)) {
      say(
        `index ${index.name} is ${describeIndex(index, false)} on the client, ` +
          `${describeIndex(theirs, false)} on the server`,
        { index: index.name },
      );
    }
  }
  for (const index of server) {
    if (clients.has(index.name)) continue;
    say(`the server has index ${describeIndex(index)}, the client does not`, {
      index: index.name,
    });
  }
  // The same indexes in another order still hash differently.
  const common = (list: readonly IndexDescription[], other: ReadonlyMap<string, unknown>) =>
    list.filter((index) => other.has(index.name)).map((index) => index.name);
  const ours = common(client, servers);
  const theirs = common(server, clients);
  if (ours.join(",") !== theirs.join(",")) {
    say(
      `the indexes are declared in another order (${ours.join(", ")} on the client, ` +
        `${theirs.join(", ")} on the server)`,
      { index: ours[0]! },
    );
  }
}

function byName<T extends { readonly name: string }>(list: readonly T[]): Map<string, T> {
  return new Map(list.map((item) => [item.name, item]));
}

function hasDefault(column: ColumnDescription): boolean {
  return Object.hasOwn(column, "default");
}

// The default as the hash compares it (its JSON), shortened for a message.
function defaultText(column: ColumnDescription): string | undefined {
  if (!hasDefault(column)) return undefined;
  const text = JSON.stringify(column.default) ?? "null";
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function describeColumn(column: ColumnDescription): string {
  const traits: string[] = [column.kind];
  if (column.notNull) traits.push("notNull");
  if (hasDefault(column)) traits.push(`default ${defaultText(column)}`);
  if (column.primaryKey) traits.push("primary key");
  return `${column.name} (${traits.join(", ")})`;
}

function describeIndex(index: IndexDescription, named = true): string {
  const on = `on (${index.columns.join(", ")})${index.unique ? ", unique" : ""}`;
  return named ? `${index.name} ${on}` : on;
}

// ---------------------------------------------------------------- the server's answer

// Names as the schema declares them (SQL identifiers), so a message quoting
// them stays one line; the pattern is bounded, its input too.
const NAME = v.pipe(v.string(), v.maxLength(64), v.regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/));
const MAX_ENTRIES = 10_000;

const schemaResponseSchema = v.object({
  protocol: v.number(),
  schema: v.pipe(v.string(), v.maxLength(256)),
  tables: v.pipe(
    v.array(v.object({
      name: NAME,
      synced: v.boolean(),
      lww: v.picklist(["row", "column"]),
      scope: v.nullable(NAME),
      columns: v.pipe(
        v.array(v.object({
          name: NAME,
          kind: v.picklist(["text", "integer", "real", "blob", "boolean", "json"]),
          notNull: v.boolean(),
          primaryKey: v.boolean(),
          default: v.optional(v.unknown()),
        })),
        v.maxLength(MAX_ENTRIES),
      ),
      indexes: v.pipe(
        v.array(v.object({
          name: NAME,
          columns: v.pipe(v.array(NAME), v.maxLength(MAX_ENTRIES)),
          unique: v.boolean(),
        })),
        v.maxLength(MAX_ENTRIES),
      ),
    })),
    v.maxLength(MAX_ENTRIES),
  ),
});

/**
 * The answer of `GET /schema` for `schema`: the protocol, the schema hash
 * and the synced tables.
 *
 * @example
 * ```ts
 * app.get("/schema", (c) => c.json(schemaResponse(schema)));
 * ```
 */
export function schemaResponse(schema: Schema): SchemaResponse {
  return { protocol: PROTOCOL_VERSION, schema: schema.hash, tables: describeSchema(schema) };
}

/**
 * The `schema_mismatch` error the server answered, explained: `readServer`
 * fetches the server's `GET /schema` answer (once); the error returned names
 * every table and column that differs and says how to fix it, with the
 * differences in `details.differences` and the server's answer in
 * `details.server`. When the answer cannot be read (an older server, a
 * failure, a malformed body), the error says so and keeps the server's
 * message: what went wrong reading the schema never hides the mismatch.
 *
 * @param original the error of the refused request (`details.status` 409)
 * @param schema the client's schema
 * @param readServer fetches `GET <base>/schema` and returns its JSON (may throw)
 * @returns a `SyncError("schema_mismatch")` whose `cause` is `original`
 *
 * @example
 * ```ts
 * throw await explainSchemaMismatch(error, db.schema, () => getJson(`${base}/schema`, options));
 * ```
 */
export async function explainSchemaMismatch(
  original: SyncError,
  schema: Schema,
  readServer: () => Promise<unknown>,
): Promise<SyncError> {
  const fix = "start the server with --schema <a module exporting this client's schema> " +
    "(or give openServerDatabase that schema), or update the client to the server's schema";
  let server: SchemaResponse;
  try {
    const checked = v.safeParse(schemaResponseSchema, await readServer());
    if (!checked.success) {
      throw new TypeError(`the answer is malformed: ${v.summarize(checked.issues)}`);
    }
    server = checked.output;
  } catch (cause) {
    const why = cause instanceof Error ? cause.message : String(cause);
    return new SyncError(
      "schema_mismatch",
      `${original.message}. The server's schema could not be read to say what differs ` +
        `(GET /schema: ${why}): ${fix}.`,
      { cause: original, details: { ...original.details, schemaUnavailable: why } },
    );
  }
  const differences = compareSchemas(describeSchema(schema), server.tables);
  const details = { ...original.details, differences, server };
  const context = `(${original.message})`;
  if (differences.length > 0) {
    const shown = differences.slice(0, MAX_LISTED).map((d) => `\n  - ${d.message}`).join("");
    const more = differences.length > MAX_LISTED
      ? `\n  - and ${differences.length - MAX_LISTED} more (details.differences)`
      : "";
    return new SyncError(
      "schema_mismatch",
      `Client and server declare different schemas ${context}:${shown}${more}\n` +
        `To fix it, ${fix}.`,
      { cause: original, details },
    );
  }
  if (server.schema === schema.hash) {
    // Another instance answered /schema than the request: one of them runs
    // another schema, as during a rolling deploy.
    return new SyncError(
      "schema_mismatch",
      `The server refused this client's schema ${context}, yet GET /schema answered with the ` +
        `same schema (${server.schema}): its instances run different schemas, as during a ` +
        `deploy. The sync is retried; if it persists, ${fix}.`,
      { cause: original, details },
    );
  }
  return new SyncError(
    "schema_mismatch",
    `The server refused this client's schema ${context}, though GET /schema describes the same ` +
      `synced tables (client ${schema.hash}, server ${server.schema}): the two ends hash them ` +
      `differently, as versions of this library far apart may. Use the same version on both, ` +
      `or ${fix}.`,
    { cause: original, details },
  );
}

/** Differences listed in a message; all of them are in `details.differences`. */
const MAX_LISTED = 20;
