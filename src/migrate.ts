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
 * @module
 */

import type { SqlAdapter, SqlExecutor, SqlStatement, SqlValue } from "./adapter.ts";
import { SyncError } from "./errors.ts";
import { COLUMN_VERSIONS, indexName, type Schema, SYSTEM_COLUMNS } from "./schema.ts";
import {
  columnDefinitionSql,
  createTableSql,
  type DatabaseRole,
  quoteId,
  SEQUENCE_COLUMN,
  sqlType,
  type TableInfo,
} from "./table_info.ts";

/** The internal tables (names fixed by the design). */
const INTERNAL_TABLES_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS _sync_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)`,
  // The outbox: one entry per changed row, holding the version to send.
  `CREATE TABLE IF NOT EXISTS _dirty_rows (table_name TEXT NOT NULL, row_id TEXT NOT NULL, ` +
  `version TEXT NOT NULL, PRIMARY KEY (table_name, row_id)) WITHOUT ROWID`,
  `CREATE INDEX IF NOT EXISTS _dirty_rows_version_idx ON _dirty_rows (version)`,
  `CREATE TABLE IF NOT EXISTS _sync_cursors (table_name TEXT PRIMARY KEY NOT NULL, cursor TEXT)`,
  `CREATE TABLE IF NOT EXISTS _sync_rejected (table_name TEXT NOT NULL, row_id TEXT NOT NULL, ` +
  `version TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL, change TEXT NOT NULL, ` +
  `rejected_at TEXT NOT NULL, PRIMARY KEY (table_name, row_id)) WITHOUT ROWID`,
];

/** What `_sync_meta` held when the database was opened. */
export interface StoredMeta {
  /** Node id, if one was stored. */
  readonly nodeId: string | undefined;
  /** Last HLC issued or received, if stored. */
  readonly hlc: string | undefined;
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
  role: DatabaseRole = "client",
): Promise<StoredMeta> {
  const hash = role === "server" ? `${schema.hash}/server` : schema.hash;
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
    await tx.batch(await migrationStatements(tx, tables, role, hash));
    return stored(current);
  });
}

// The DDL that brings the stored tables to `tables`, ending with the new hash.
async function migrationStatements(
  adapter: SqlExecutor,
  tables: ReadonlyMap<string, TableInfo>,
  role: DatabaseRole,
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
    if (stored === undefined) {
      ddl.push({ sql: createTableSql(info, role) });
    } else {
      ddl.push(...alterTable(info, stored, role));
    }
    if (role === "server" && info.synced) {
      // The pull cursor: rows changed after a sequence number, per scope if any.
      const scope = info.def.scope === undefined ? "" : `${quoteId(info.def.scope)}, `;
      ddl.push({
        sql: `CREATE INDEX IF NOT EXISTS ${quoteId(`${info.name}_${SEQUENCE_COLUMN}_idx`)} ` +
          `ON ${info.quoted} (${scope}${SEQUENCE_COLUMN})`,
      });
    }
    for (const index of info.def.indexes) {
      const name = indexName(info.name, index);
      const sql =
        `CREATE ${index.unique ? "UNIQUE " : ""}INDEX ${quoteId(name)} ON ${info.quoted} ` +
        `(${index.columns.map(quoteId).join(", ")})`;
      const stored = indexes.get(name);
      if (stored === sql) continue;
      // An index holds no data of its own: a changed one is rebuilt.
      if (stored !== undefined) ddl.push({ sql: `DROP INDEX ${quoteId(name)}` });
      ddl.push({ sql });
    }
  }
  ddl.push({
    sql: `INSERT INTO _sync_meta (key, value) VALUES ('schema_hash', ?) ` +
      `ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    args: [hash],
  });
  return ddl;
}

interface StoredColumn {
  readonly name: string;
  readonly type: string;
  readonly notNull: boolean;
}

async function readMeta(adapter: SqlExecutor): Promise<Map<string, string> | undefined> {
  const found = await adapter.execute({
    sql: `SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sync_meta'`,
  });
  if (found.rows.length === 0) return undefined;
  const { rows } = await adapter.execute({ sql: `SELECT key, value FROM _sync_meta` });
  return new Map(rows.map((row) => [String(row.key), String(row.value)]));
}

async function readStoredTables(
  adapter: SqlExecutor,
  names: readonly string[],
): Promise<Map<string, StoredColumn[]>> {
  const { rows } = await adapter.execute({
    sql: `SELECT m.name AS table_name, p.name AS name, p.type AS type, p."notnull" AS not_null ` +
      `FROM sqlite_master m JOIN pragma_table_info(m.name) p ` +
      `WHERE m.type = 'table' AND m.name IN (SELECT value FROM json_each(?)) ORDER BY m.name, p.cid`,
    args: [JSON.stringify(names)],
  });
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

function alterTable(
  info: TableInfo,
  stored: readonly StoredColumn[],
  role: DatabaseRole,
): SqlStatement[] {
  const refuse = (column: string, why: string): never => {
    throw new SyncError(
      "destructive_migration",
      `Cannot migrate ${info.name}.${column}: ${why}. Migrate this table by hand.`,
      { details: { table: info.name, column } },
    );
  };
  const storedByName = new Map(stored.map((c) => [c.name, c]));
  const systemColumns: string[] = info.synced ? [...SYSTEM_COLUMNS] : [];
  if (info.perColumn) systemColumns.push(COLUMN_VERSIONS);
  const sequenced = role === "server" && info.synced;
  if (sequenced) systemColumns.push(SEQUENCE_COLUMN);

  for (const column of stored) {
    if (!info.byName.has(column.name) && !systemColumns.includes(column.name)) {
      refuse(column.name, "the column is stored but no longer declared (dropping it loses data)");
    }
  }
  const statements: SqlStatement[] = [];
  if (sequenced && !storedByName.has(SEQUENCE_COLUMN)) {
    statements.push({ sql: `ALTER TABLE ${info.quoted} ADD COLUMN ${SEQUENCE_COLUMN} INTEGER` });
  }
  for (const name of systemColumns) {
    if (name === SEQUENCE_COLUMN) continue;
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
      if (column.primaryKey) refuse(column.name, "a primary key cannot be added to a stored table");
      if (column.notNull && column.encodedDefault === undefined) {
        refuse(column.name, "a new notNull column needs a default for the rows already stored");
      }
      statements.push({
        sql: `ALTER TABLE ${info.quoted} ADD COLUMN ${columnDefinitionSql(column)}`,
      });
      continue;
    }
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
  return statements;
}
