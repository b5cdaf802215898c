/**
 * The server's database: the same tables, HLC rules and merge code as a
 * client replica, plus the change sequence that pull cursors are made of.
 *
 * A push is applied in one write transaction. Inside it, each accepted row
 * gets the next number of a sequence stored in `_sync_meta`; SQLite runs one
 * write transaction at a time per database, so sequence order is commit order,
 * also with several server instances on one database file. A pull returns the
 * rows whose sequence is greater than the cursor, in sequence order, so no page
 * boundary can skip or repeat a committed row, whatever the clients' clocks.
 *
 * Verdicts: `applied` (newer, written), `stale` (the server had newer — the
 * UPSERT's conflict clause said no), `rejected` with a code: `clock_drift` (the
 * version is more than `maxDrift` ahead of server time), `forbidden` (another
 * principal's scope), `constraint` (the database refused the row), or the code
 * of the `SyncError` that refused the row's values.
 *
 * @module
 */

import type { SqlAdapter, SqlExecutor, SqlValue } from "../src/adapter.ts";
import { SyncError } from "../src/errors.ts";
import { DEFAULT_MAX_DRIFT_MS, parseHlc } from "../src/hlc.ts";
import { groupByColumns, type NormalizedRow, normalizeRow, upsertStatement } from "../src/merge.ts";
import { migrate } from "../src/migrate.ts";
import type { PullRow, PullTableChanges, PushChange, PushResult } from "../src/protocol.ts";
import { COLUMN_VERSIONS, type Schema, type TableDef } from "../src/schema.ts";
import {
  decodeValue,
  describeTables,
  quoteId,
  SEQUENCE_COLUMN,
  type TableInfo,
} from "../src/table_info.ts";
import { dataFromWire, dataToWire } from "../src/wire.ts";

/** Who is asking: the result of `authorize`. Its `id` is matched against scope columns. */
export interface Principal {
  /** The principal's id; rows of a scoped table belong to the principal whose id they hold. */
  readonly id: string;
}

/** Options of {@linkcode openServerDatabase}. */
export interface ServerDatabaseOptions<T extends Record<string, TableDef>> {
  /** The SQL engine: `libsqlAdapter(createClient({ url }))`. */
  adapter: SqlAdapter;
  /** The same schema the clients declare. */
  schema: Schema<T>;
  /** How far (ms) a change's version may be ahead of server time. Default 60 s. */
  maxDrift?: number;
  /** The server's wall clock (ms). Default `Date.now`. */
  now?: () => number;
  /**
   * `"wal"` switches a local database file to write-ahead logging: readers no
   * longer wait for the writer, and a commit costs one sync instead of a
   * journal's several (`server/main.ts` uses it for `file:` databases).
   */
  journalMode?: "wal";
}

/** The server side of sync. */
export interface ServerDatabase {
  /** The schema served. */
  readonly schema: Schema;
  /** The server's wall clock. */
  readonly now: () => number;
  /** Applies pushed changes in one transaction; one verdict per change, in order. */
  push(changes: readonly PushChange[], principal?: Principal): Promise<PushResult[]>;
  /** One page per requested table: rows changed after each cursor, at most `limit` each. */
  pull(
    cursors: Readonly<Record<string, string | null>>,
    limit: number,
    options?: PullOptions,
  ): Promise<Record<string, PullTableChanges>>;
  /** Closes the adapter. */
  close(): Promise<void>;
}

/** Options of {@linkcode ServerDatabase.pull}. */
export interface PullOptions {
  /** Who is asking: scoped tables return only this principal's rows. */
  readonly principal?: Principal;
  /**
   * The asking replica's node id. After its first pull (a non-null cursor), rows
   * whose current state that node wrote itself are left out of the page — it
   * holds them already — while the cursor still moves past them.
   */
  readonly nodeId?: string;
}

/** Rows per UPSERT statement on the server. */
const ROWS_PER_STATEMENT = 500;

interface Accepted {
  readonly index: number;
  readonly row: NormalizedRow;
}

/**
 * Opens (creating and migrating) the server's database.
 *
 * @example
 * ```ts
 * const database = await openServerDatabase({
 *   adapter: libsqlAdapter(createClient({ url: "file:data/sync.db" })),
 *   schema,
 * });
 * ```
 */
export async function openServerDatabase<T extends Record<string, TableDef>>(
  options: ServerDatabaseOptions<T>,
): Promise<ServerDatabase> {
  const { adapter, schema } = options;
  const now = options.now ?? Date.now;
  const maxDrift = options.maxDrift ?? DEFAULT_MAX_DRIFT_MS;
  const tables = describeTables(schema.tables);
  if (options.journalMode === "wal") await adapter.execute({ sql: "PRAGMA journal_mode = WAL" });
  await migrate(adapter, schema, tables, "server");

  const reject = (table: string, id: string, code: string, message: string): PushResult => ({
    table,
    id,
    status: "rejected",
    code,
    message,
  });

  async function push(
    changes: readonly PushChange[],
    principal?: Principal,
  ): Promise<PushResult[]> {
    const results = new Array<PushResult>(changes.length);
    const serverTime = now();
    const accepted = new Map<TableInfo, Accepted[]>();
    changes.forEach((change, index) => {
      const info = tables.get(change.table);
      if (info === undefined || !info.synced) {
        results[index] = reject(change.table, change.id, "unknown_table", "Unknown synced table");
        return;
      }
      try {
        const row = normalizeRow(info, { ...change, data: dataFromWire(info, change.data) });
        const lead = parseHlc(row.version).ms - serverTime;
        if (lead > maxDrift) {
          results[index] = reject(
            info.name,
            row.id,
            "clock_drift",
            `Version ${row.version} is ${lead} ms ahead of server time ${serverTime} (maxDrift ${maxDrift} ms)`,
          );
          return;
        }
        const scopeError = checkScope(info, row, principal);
        if (scopeError !== undefined) {
          results[index] = reject(info.name, row.id, "forbidden", scopeError);
          return;
        }
        const list = accepted.get(info) ?? [];
        list.push({ index, row });
        accepted.set(info, list);
      } catch (error) {
        if (!(error instanceof SyncError)) throw error;
        results[index] = reject(info.name, change.id, error.code, error.message);
      }
    });

    if (accepted.size > 0) {
      await adapter.transaction(async (tx) => {
        let sequence = await readSequence(tx);
        for (const [info, list] of accepted) {
          const allowed = await withoutOthersRows(tx, info, list, principal, results);
          for (const group of groupByColumns(info, allowed.map((a) => a.row))) {
            const members = allowed.filter((a) => group.rows.includes(a.row));
            for (let start = 0; start < members.length; start += ROWS_PER_STATEMENT) {
              const chunk = members.slice(start, start + ROWS_PER_STATEMENT);
              const numbers = chunk.map(() => ++sequence);
              const applied = await upsertChunk(tx, info, group.columns, chunk, numbers, results);
              for (const { index, row } of chunk) {
                results[index] ??= {
                  table: info.name,
                  id: row.id,
                  status: applied.has(row.id) ? "applied" : "stale",
                };
              }
            }
          }
        }
        await tx.execute({
          sql: `INSERT INTO _sync_meta (key, value) VALUES ('sequence', ?) ` +
            `ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
          args: [String(sequence)],
        });
      });
    }
    return results;
  }

  async function pull(
    cursors: Readonly<Record<string, string | null>>,
    limit: number,
    options: PullOptions = {},
  ): Promise<Record<string, PullTableChanges>> {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`Pull limit must be a positive integer, got ${limit}`);
    }
    const pages: Record<string, PullTableChanges> = {};
    for (const [table, cursor] of Object.entries(cursors)) {
      const info = tables.get(table);
      if (info === undefined || !info.synced) {
        throw new SyncError("unknown_table", `Unknown synced table ${table}`, {
          details: { table },
        });
      }
      pages[table] = await pullTable(info, cursor, limit, options);
    }
    return pages;
  }

  async function pullTable(
    info: TableInfo,
    cursor: string | null,
    limit: number,
    { principal, nodeId }: PullOptions,
  ): Promise<PullTableChanges> {
    if (cursor !== null && !/^\d{1,15}$/.test(cursor)) {
      throw new SyncError(
        "invalid_change",
        `Invalid cursor ${JSON.stringify(cursor)} for ${info.name}`,
        {
          details: { table: info.name },
        },
      );
    }
    const args: SqlValue[] = [cursor === null ? 0 : Number(cursor)];
    let scope = "";
    if (info.def.scope !== undefined && principal !== undefined) {
      scope = ` AND ${quoteId(info.def.scope)} = ?`;
      args.push(principal.id);
    }
    args.push(limit + 1);
    const extra = info.perColumn ? `, ${quoteId(COLUMN_VERSIONS)}` : "";
    const { rows } = await adapter.execute({
      sql: `SELECT ${info.selectList}${extra}, ${SEQUENCE_COLUMN} FROM ${info.quoted} ` +
        `WHERE ${SEQUENCE_COLUMN} > ?${scope} ORDER BY ${SEQUENCE_COLUMN} LIMIT ?`,
      args,
    });
    const hasMore = rows.length > limit;
    const page = hasMore ? rows.slice(0, limit) : rows;
    const last = page.at(-1);
    const own = cursor === null || nodeId === undefined ? undefined : `:${nodeId}`;
    const sent: PullRow[] = [];
    for (const row of page) {
      if (own === undefined || !writtenBy(info, row, own)) sent.push(toPullRow(info, row));
    }
    return {
      rows: sent,
      // An empty first page still answers with a cursor: the replica has now
      // seen the table from its beginning.
      cursor: last === undefined ? cursor ?? "0" : String(last[SEQUENCE_COLUMN]),
      hasMore,
    };
  }

  return { schema, now, push, pull, close: () => adapter.close() };
}

// True when every part of the row's current state carries versions issued by
// the node (`suffix` is ":<nodeId>"): for column tables, every column version.
function writtenBy(info: TableInfo, row: Record<string, SqlValue>, suffix: string): boolean {
  if (!String(row.system_version).endsWith(suffix)) return false;
  if (!info.perColumn) return true;
  const versions = JSON.parse(String(row[COLUMN_VERSIONS])) as Record<string, string>;
  return Object.values(versions).every((version) => version.endsWith(suffix));
}

// A scoped row must carry the principal's id in its scope column.
function checkScope(
  info: TableInfo,
  row: NormalizedRow,
  principal: Principal | undefined,
): string | undefined {
  if (info.def.scope === undefined || principal === undefined) return undefined;
  const column = info.byName.get(info.def.scope)!;
  const value = row.values[column.index];
  if (value === principal.id) return undefined;
  return `Row ${row.id} of ${info.name} must have ${column.name} = ${principal.id}`;
}

async function readSequence(tx: SqlExecutor): Promise<number> {
  const { rows } = await tx.execute({
    sql: `SELECT value FROM _sync_meta WHERE key = 'sequence'`,
  });
  return rows[0] === undefined ? 0 : Number(rows[0].value);
}

// Rows already stored under another principal's scope cannot be written:
// that would change someone else's row, or move it out of their scope.
async function withoutOthersRows(
  tx: SqlExecutor,
  info: TableInfo,
  list: readonly Accepted[],
  principal: Principal | undefined,
  results: PushResult[],
): Promise<Accepted[]> {
  if (info.def.scope === undefined || principal === undefined) return [...list];
  const { rows } = await tx.execute({
    sql: `SELECT system_id FROM ${info.quoted} WHERE system_id IN ` +
      `(SELECT value FROM json_each(?)) AND ${quoteId(info.def.scope)} IS NOT ?`,
    args: [JSON.stringify(list.map((a) => a.row.id)), principal.id],
  });
  const foreign = new Set(rows.map((row) => String(row.system_id)));
  const allowed: Accepted[] = [];
  for (const item of list) {
    if (!foreign.has(item.row.id)) {
      allowed.push(item);
      continue;
    }
    results[item.index] = {
      table: info.name,
      id: item.row.id,
      status: "rejected",
      code: "forbidden",
      message: `Row ${item.row.id} of ${info.name} belongs to another scope`,
    };
  }
  return allowed;
}

// Runs one UPSERT; when the database refuses it (a constraint), retries the
// rows one by one so that only the offending rows are rejected.
async function upsertChunk(
  tx: SqlExecutor,
  info: TableInfo,
  columns: Parameters<typeof upsertStatement>[1],
  chunk: readonly Accepted[],
  numbers: readonly number[],
  results: PushResult[],
): Promise<Set<string>> {
  const applied = new Set<string>();
  try {
    const { rows } = await tx.execute(
      upsertStatement(info, columns, chunk.map((a) => a.row), numbers),
    );
    for (const row of rows) applied.add(String(row.system_id));
    return applied;
  } catch (error) {
    if (!(error instanceof SyncError) || error.code !== "constraint") throw error;
  }
  for (let i = 0; i < chunk.length; i++) {
    const { index, row } = chunk[i]!;
    try {
      const { rows } = await tx.execute(upsertStatement(info, columns, [row], [numbers[i]!]));
      if (rows.length > 0) applied.add(row.id);
    } catch (error) {
      if (!(error instanceof SyncError) || error.code !== "constraint") throw error;
      results[index] = {
        table: info.name,
        id: row.id,
        status: "rejected",
        code: "constraint",
        message: error.message,
      };
    }
  }
  return applied;
}

function toPullRow(info: TableInfo, row: Record<string, SqlValue>): PullRow {
  const data: Record<string, unknown> = {};
  for (const column of info.columns) {
    data[column.name] = decodeValue(column.kind, row[column.name]!);
  }
  const pulled: PullRow = {
    id: String(row.system_id),
    version: String(row.system_version),
    createdAt: String(row.system_created_at),
    deleted: Number(row.is_deleted) === 1,
    data: dataToWire(info, data),
  };
  if (!info.perColumn) return pulled;
  return { ...pulled, columnVersions: JSON.parse(String(row[COLUMN_VERSIONS])) };
}
