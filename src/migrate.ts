/**
 * Creates and migrates the stored database to the declared schema.
 *
 * Additive changes are applied automatically and keep every row: a new table,
 * a new nullable or defaulted column, a new index. A change that would lose or
 * invent data — a dropped or retyped column, a new `notNull` column without a
 * default, a changed `notNull`, a table moving in or out of sync or between
 * `lww` modes — raises `SyncError("destructive_migration")` naming the table and
 * column, before anything is changed. The DDL of one migration runs in one
 * write transaction with the reads it was planned from, so it applies
 * completely or not at all, and two processes opening one new file at once
 * both succeed.
 *
 * The schema hash is stored in `_sync_meta`; reopening an unchanged schema
 * costs one query and runs no DDL.
 *
 * A role that keeps more in the same tables (the sync server's change
 * sequence) passes a {@linkcode MigrationExtension}: its columns are added
 * to every synced table and its statements run after each table's DDL, so
 * the core knows nothing of what it adds.
 *
 * @module
 */

import type { SqlAdapter, SqlExecutor, SqlStatement, SqlValue } from "./adapter.ts";
import { SyncError } from "./errors.ts";
import { COLUMN_VERSIONS, indexName, type Schema, SYSTEM_COLUMNS } from "./schema.ts";
import { CURSORS_TABLE_SQL } from "./cursors.ts";
import { META_TABLE_SQL, readMeta, setMetaStatement, type StoredMeta } from "./meta.ts";
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
  const hash = extension === undefined ? schema.hash : `${schema.hash}/${extension.name}`;
  const stored = (meta: Map<string, string> | undefined): StoredMeta => ({
    nodeId: meta?.get("node_id"),
    hlc: meta?.get("hlc"),
  });
  const meta = await readMeta(adapter);
  if (meta !== undefined && meta.get("schema_hash") === hash) return stored(meta);
  // Read and change under the write lock: another process opening the same
  // file at the same moment migrates first or waits, and then finds the
  // tables it would have created.
  return await adapter.transaction(async (tx) => {
    const current = await readMeta(tx);
    if (current !== undefined && current.get("schema_hash") === hash) return stored(current);
    await tx.batch(await migrationStatements(tx, tables, extension, hash));
    return stored(current);
  });
}

// The DDL that brings the stored tables to `tables`, ending with the new hash.
async function migrationStatements(
  adapter: SqlExecutor,
  tables: ReadonlyMap<string, TableInfo>,
  extension: MigrationExtension | undefined,
  hash: string,
): Promise<SqlStatement[]> {
  const existing = await readStoredTables(adapter, [...tables.keys()]);
  const { rows: indexRows } = await adapter.execute({
    sql: `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL`,
  });
  const indexes = new Map(indexRows.map((row) => [String(row.name), String(row.sql)]));
  const ddl: SqlStatement[] = INTERNAL_TABLES_SQL.map((sql) => ({ sql }));
  for (const info of tables.values()) {
    const stored = existing.get(info.name);
    const extra = info.synced && extension !== undefined ? extension.columns(info) : [];
    if (stored === undefined) {
      ddl.push({ sql: createTableSql(info, extra) });
    } else {
      ddl.push(...alterTable(info, stored, extra));
    }
    if (info.synced && extension !== undefined) ddl.push(...extension.statements(info));
    ddl.push(...indexStatements(info, indexes));
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

async function readStoredTables(
  adapter: SqlExecutor,
  names: readonly string[],
): Promise<Map<string, StoredColumn[]>> {
  const { rows } = await adapter.execute(
    sql`SELECT m.name AS table_name, p.name AS name, p.type AS type, p."notnull" AS not_null
      FROM sqlite_master m JOIN pragma_table_info(m.name) p
      WHERE m.type = 'table' AND m.name IN (SELECT value FROM json_each(${JSON.stringify(names)}))
      ORDER BY m.name, p.cid`,
  );
  const tables = new Map<string, StoredColumn[]>();
  for (const row of rows as Record<string, SqlValue>[]) {
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
