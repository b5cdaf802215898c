/**
 * Creates and migrates the stored database to the declared schema.
 *
 * Additive changes are applied automatically and keep every row: a new table,
 * a new nullable or defaulted column, a new index. A change that would lose or
 * invent data — a dropped or retyped column, a new `notNull` column without a
 * default, a changed `notNull`, a table moving in or out of sync or between
 * `lww` modes — raises `SyncError("destructive_migration")` naming the table and
 * column, before anything is changed.
 *
 * It costs one round trip to the database when the schema is unchanged and
 * two when it migrates, which matters where each one crosses a network (an
 * endpoint at the edge starting cold): one read batch reads the stored hash,
 * the tables' columns and the indexes (on a new database, without
 * `_sync_meta`, it fails at once and nothing is taken to be stored); one
 * batch applies the DDL, which therefore applies completely or not at all.
 * That batch first checks that the stored state is still the one the plan
 * was made from (a NOT NULL failure otherwise aborts it): when another
 * process migrated in between, the state is read again and the plan made
 * anew, so two processes opening one new file at once both succeed.
 *
 * A role that keeps more in the same tables (the sync server's change
 * sequence) passes a {@linkcode MigrationExtension}: its columns are added
 * to every synced table and its statements run after each table's DDL, so
 * the core knows nothing of what it adds.
 *
 * @module
 */

import type { SqlAdapter, SqlExecutor, SqlResult, SqlStatement, SqlValue } from "./adapter.ts";
import { SyncError } from "./errors.ts";
import { COLUMN_VERSIONS, indexName, type Schema, SYSTEM_COLUMNS } from "./schema.ts";
import { CURSORS_TABLE_SQL } from "./cursors.ts";
import { META_TABLE_SQL, setMetaStatement, type StoredMeta } from "./meta.ts";
import { OUTBOX_TABLE_SQL } from "./outbox.ts";
import { REJECTED_TABLE_SQL } from "./rejected.ts";
import { sql } from "./sql.ts";
import {
  columnDefinitionSql,
  type ColumnInfo,
  createTableSql,
  type ExtraColumn,
  quoteId,
  sqlType,
  type TableInfo,
} from "./table_info.ts";

/** The internal tables (names fixed by the design), each defined by its own module. */
const INTERNAL_TABLES_SQL: readonly string[] = [
  ...META_TABLE_SQL,
  ...OUTBOX_TABLE_SQL,
  ...CURSORS_TABLE_SQL,
  ...REJECTED_TABLE_SQL,
];

/** What a role adds to the declared tables (see the module doc). */
export interface MigrationExtension {
  /** Names the role in the stored schema hash: a database migrated for it is migrated again for another. */
  readonly name: string;
  /** Columns added to every synced table. */
  columns(info: TableInfo): readonly ExtraColumn[];
  /** Statements run after a table's DDL (indexes over those columns); `IF NOT EXISTS` ones. */
  statements(info: TableInfo): readonly SqlStatement[];
}

/**
 * Brings the stored database to `schema` and returns the stored meta values.
 *
 * @throws {SyncError} `destructive_migration` when the change would lose or invent data.
 */
export async function migrate(
  adapter: SqlAdapter,
  schema: Schema,
  tables: ReadonlyMap<string, TableInfo>,
  extension?: MigrationExtension,
): Promise<StoredMeta> {
  const hash = extension === undefined
    ? schema.migrationHash
    : `${schema.migrationHash}/${extension.name}`;
  const names = [...tables.keys()];
  let state = await readStoredState(adapter, names);
  for (let attempt = 1;; attempt++) {
    const meta = { nodeId: state.meta.get("node_id"), hlc: state.meta.get("hlc") };
    if (state.meta.get("schema_hash") === hash) return meta;
    const ddl = migrationStatements(state, tables, extension, hash);
    try {
      await adapter.batch(ddl);
      return meta;
    } catch (error) {
      // Another process may have migrated since the state was read: plan
      // again from what it left. Otherwise the failure is the answer.
      const now = await readStoredState(adapter, names);
      const moved = now.meta.get("schema_hash") !== state.meta.get("schema_hash");
      if (attempt >= 5 || (!moved && !state.assumedNew)) throw error;
      // Still no `_sync_meta`, yet declared tables exist: plan from them.
      state = now.assumedNew ? { ...await readStoredTables(adapter, names), meta: now.meta } : now;
    }
  }
}

// What a migration is planned from: `_sync_meta`, the columns of the stored
// tables among the declared ones, and every index. A database without
// `_sync_meta` is taken to be new (no declared table stored, which the
// migration's batch checks before it changes anything).
interface StoredState {
  readonly meta: ReadonlyMap<string, string>;
  readonly tables: ReadonlyMap<string, readonly StoredColumn[]>;
  readonly indexes: ReadonlyMap<string, string>;
  readonly assumedNew?: boolean;
}

// One read batch: the meta values, the stored tables and the indexes.
async function readStoredState(
  adapter: SqlExecutor,
  names: readonly string[],
): Promise<StoredState> {
  try {
    const [meta, ...rest] = await adapter.batch([
      { sql: `SELECT key, value FROM _sync_meta` },
      ...storedTablesStatements(names),
    ], "read");
    return {
      meta: new Map(meta!.rows.map((row) => [String(row.key), String(row.value)])),
      ...storedTablesOf(rest),
    };
  } catch (error) {
    if (!/no such table: _sync_meta/i.test(String((error as Error)?.message))) throw error;
    return { meta: new Map(), tables: new Map(), indexes: new Map(), assumedNew: true };
  }
}

async function readStoredTables(
  adapter: SqlExecutor,
  names: readonly string[],
): Promise<Pick<StoredState, "tables" | "indexes">> {
  return storedTablesOf(await adapter.batch(storedTablesStatements(names), "read"));
}

function storedTablesStatements(names: readonly string[]): SqlStatement[] {
  return [
    sql`SELECT m.name AS table_name, p.name AS name, p.type AS type, p."notnull" AS not_null
      FROM sqlite_master m JOIN pragma_table_info(m.name) p
      WHERE m.type = 'table' AND m.name IN (SELECT value FROM json_each(${JSON.stringify(names)}))
      ORDER BY m.name, p.cid`,
    { sql: `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL` },
  ];
}

function storedTablesOf(
  [columns, indexes]: readonly SqlResult[],
): Pick<StoredState, "tables" | "indexes"> {
  return {
    tables: storedTables(columns!.rows),
    indexes: new Map(indexes!.rows.map((row) => [String(row.name), String(row.sql)])),
  };
}

// Aborts the migration's batch (a NOT NULL failure) unless the stored
// schema hash is still the one the plan was made from and, for a database
// taken to be new, none of `names` is stored.
function unchangedStateStatement(state: StoredState, names: readonly string[]): SqlStatement {
  const planned = state.meta.get("schema_hash") ?? null;
  const unexpected = JSON.stringify(state.assumedNew ? names : []);
  return sql`INSERT INTO _sync_meta (key, value) SELECT 'schema_hash_check', NULL
    WHERE (SELECT value FROM _sync_meta WHERE key = 'schema_hash') IS NOT ${planned}
    OR EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table'
      AND name IN (SELECT value FROM json_each(${unexpected})))`;
}

// The DDL that brings the stored tables to `tables`, ending with the new hash.
function migrationStatements(
  state: StoredState,
  tables: ReadonlyMap<string, TableInfo>,
  extension: MigrationExtension | undefined,
  hash: string,
): SqlStatement[] {
  // The internal tables first: the check writes to `_sync_meta`.
  const ddl: SqlStatement[] = INTERNAL_TABLES_SQL.map((sql) => ({ sql }));
  ddl.push(unchangedStateStatement(state, [...tables.keys()]));
  for (const info of tables.values()) {
    const stored = state.tables.get(info.name);
    const extra = info.synced && extension !== undefined ? extension.columns(info) : [];
    if (stored === undefined) {
      ddl.push({ sql: createTableSql(info, extra) });
    } else {
      ddl.push(...alterTable(info, stored, extra));
    }
    if (info.synced && extension !== undefined) ddl.push(...extension.statements(info));
    ddl.push(...indexStatements(info, state.indexes));
  }
  ddl.push(setMetaStatement("schema_hash", hash));
  return ddl;
}

// The declared indexes of a table that are missing or changed.
function indexStatements(info: TableInfo, stored: ReadonlyMap<string, string>): SqlStatement[] {
  const ddl: SqlStatement[] = [];
  for (const index of info.def.indexes) {
    const name = indexName(info.name, index);
    const sql = `CREATE ${index.unique ? "UNIQUE " : ""}INDEX ${quoteId(name)} ON ${info.quoted} ` +
      `(${index.columns.map(quoteId).join(", ")})`;
    const current = stored.get(name);
    if (current === sql) continue;
    // An index holds no data of its own: a changed one is rebuilt.
    if (current !== undefined) ddl.push({ sql: `DROP INDEX ${quoteId(name)}` });
    ddl.push({ sql });
  }
  return ddl;
}

interface StoredColumn {
  readonly name: string;
  readonly type: string;
  readonly notNull: boolean;
}

function storedTables(rows: readonly Record<string, SqlValue>[]): Map<string, StoredColumn[]> {
  const tables = new Map<string, StoredColumn[]>();
  for (const row of rows) {
    const name = String(row.table_name);
    const columns = tables.get(name) ?? [];
    columns.push({
      name: String(row.name),
      type: String(row.type).toUpperCase(),
      notNull: Number(row.not_null) === 1,
    });
    tables.set(name, columns);
  }
  return tables;
}

// The ALTER TABLE statements bringing a stored table to its declaration:
// added columns only. Anything else refuses before a statement runs.
function alterTable(
  info: TableInfo,
  stored: readonly StoredColumn[],
  extra: readonly ExtraColumn[],
): SqlStatement[] {
  const refuse = refuser(info);
  const storedByName = new Map(stored.map((c) => [c.name, c]));
  const systemColumns: string[] = info.synced ? [...SYSTEM_COLUMNS] : [];
  if (info.perColumn) systemColumns.push(COLUMN_VERSIONS);
  const extraNames = extra.map((column) => column.name);
  for (const column of stored) {
    const known = info.byName.has(column.name) || systemColumns.includes(column.name) ||
      extraNames.includes(column.name);
    if (!known) {
      refuse(column.name, "the column is stored but no longer declared (dropping it loses data)");
    }
  }
  const add = (definition: string) => ({
    sql: `ALTER TABLE ${info.quoted} ADD COLUMN ${definition}`,
  });
  const statements: SqlStatement[] = extra
    .filter((column) => !storedByName.has(column.name))
    .map((column) => add(`${quoteId(column.name)} ${column.definition}`));
  for (const name of systemColumns) {
    if (!storedByName.has(name)) {
      refuse(
        name,
        `the stored table lacks this system column (a change of withSystemColumns or lww)`,
      );
    }
  }
  for (const column of info.columns) {
    const existing = storedByName.get(column.name);
    if (existing === undefined) {
      checkAddable(column, refuse);
      statements.push(add(columnDefinitionSql(column)));
    } else {
      checkUnchanged(column, existing, refuse);
    }
  }
  return statements;
}

type Refuse = (column: string, why: string) => never;

function refuser(info: TableInfo): Refuse {
  return (column, why) => {
    throw new SyncError(
      "destructive_migration",
      `Cannot migrate ${info.name}.${column}: ${why}. Migrate this table by hand.`,
      { details: { table: info.name, column } },
    );
  };
}

// A declared column the stored table lacks can be added only if the stored
// rows can have it without inventing a value.
function checkAddable(column: ColumnInfo, refuse: Refuse): void {
  if (column.primaryKey) refuse(column.name, "a primary key cannot be added to a stored table");
  if (column.notNull && column.encodedDefault === undefined) {
    refuse(column.name, "a new notNull column needs a default for the rows already stored");
  }
}

function checkUnchanged(column: ColumnInfo, existing: StoredColumn, refuse: Refuse): void {
  if (existing.type !== sqlType(column.kind)) {
    refuse(
      column.name,
      `the column is stored as ${existing.type}, declared as ${sqlType(column.kind)}`,
    );
  }
  if (existing.notNull !== column.notNull && !column.primaryKey) {
    refuse(column.name, `notNull changed from ${existing.notNull} to ${column.notNull}`);
  }
}
