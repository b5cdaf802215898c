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
import { dataJsonSql, jsonBooleanSql } from "../src/json_rows.ts";
import { migrate } from "../src/migrate.ts";
import type { PullRow, PullTableChanges, PushChange, PushResult } from "../src/protocol.ts";
import { COLUMN_VERSIONS, type Schema, type TableDef } from "../src/schema.ts";
import { describeTables, quoteId, SEQUENCE_COLUMN, type TableInfo } from "../src/table_info.ts";
import { blobColumnsOf, dataFromWire, fromHex, toBase64 } from "../src/wire.ts";

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
  push(changes: readonly PushChange[], options?: PushOptions): Promise<PushResult[]>;
  /** One page per requested table: rows changed after each cursor, at most `limit` each. */
  pull(
    cursors: Readonly<Record<string, string | null>>,
    limit: number,
    options?: PullOptions,
  ): Promise<Record<string, PullTableChanges>>;
  /** The same pages as {@linkcode ServerDatabase.pull}, as the JSON text of the response's `changes`. */
  pullJson(
    cursors: Readonly<Record<string, string | null>>,
    limit: number,
    options?: PullOptions,
  ): Promise<string>;
  /** Closes the adapter. */
  close(): Promise<void>;
}

/** Options of {@linkcode ServerDatabase.push}. */
export interface PushOptions {
  /** Who is pushing: scoped tables accept only this principal's rows. */
  readonly principal?: Principal;
  /** Overrides the database's `maxDrift` for this push (ms). */
  readonly maxDrift?: number;
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
  const defaultMaxDrift = options.maxDrift ?? DEFAULT_MAX_DRIFT_MS;
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
    { principal, maxDrift = defaultMaxDrift }: PushOptions = {},
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

  async function pullJson(
    cursors: Readonly<Record<string, string | null>>,
    limit: number,
    options: PullOptions = {},
  ): Promise<string> {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`Pull limit must be a positive integer, got ${limit}`);
    }
    const parts: string[] = [];
    for (const [table, cursor] of Object.entries(cursors)) {
      const info = tables.get(table);
      if (info === undefined || !info.synced) {
        throw new SyncError("unknown_table", `Unknown synced table ${table}`, {
          details: { table },
        });
      }
      const page = await pullTable(info, cursor, limit, options);
      parts.push(
        `${JSON.stringify(table)}:{"rows":${page.rowsJson},"cursor":${
          JSON.stringify(page.cursor)
        },"hasMore":${page.hasMore}}`,
      );
    }
    return `{${parts.join(",")}}`;
  }

  const pull = async (
    cursors: Readonly<Record<string, string | null>>,
    limit: number,
    options: PullOptions = {},
  ): Promise<Record<string, PullTableChanges>> =>
    JSON.parse(await pullJson(cursors, limit, options));

  async function pullTable(
    info: TableInfo,
    cursor: string | null,
    limit: number,
    { principal, nodeId }: PullOptions,
  ): Promise<PageJson> {
    if (cursor !== null && !/^\d{1,15}$/.test(cursor)) {
      throw new SyncError(
        "invalid_change",
        `Invalid cursor ${JSON.stringify(cursor)} for ${info.name}`,
        {
          details: { table: info.name },
        },
      );
    }
    let scope = "";
    const scopeArgs: SqlValue[] = [];
    if (info.def.scope !== undefined && principal !== undefined) {
      scope = ` AND ${quoteId(info.def.scope)} = ?`;
      scopeArgs.push(principal.id);
    }
    // The newest committed sequence first: sequences are assigned under the
    // write lock, so everything up to it is committed, and the page can stop
    // there even if rows it skips (the asker's own) come last.
    const { rows: [top] } = await adapter.execute({
      sql: `SELECT max(${SEQUENCE_COLUMN}) AS top FROM ${info.quoted} WHERE 1 = 1${scope}`,
      args: scopeArgs,
    });
    const newest = top?.top === null || top?.top === undefined ? undefined : Number(top.top);
    const after = cursor === null ? 0 : Number(cursor);
    if (newest === undefined || newest <= after) {
      return { rowsJson: "[]", cursor: cursor ?? "0", hasMore: false };
    }

    let own = "";
    const ownArgs: SqlValue[] = [];
    if (cursor !== null && nodeId !== undefined) {
      // Leave out rows whose whole current state the asker wrote (it holds
      // them): the node id starts at character 31 of a version.
      own = info.perColumn
        ? ` AND (substr(system_version, 31) <> ? OR EXISTS (SELECT 1 FROM json_each(` +
          `${quoteId(COLUMN_VERSIONS)}) WHERE substr(value, 31) <> ?))`
        : ` AND substr(system_version, 31) <> ?`;
      ownArgs.push(...(info.perColumn ? [nodeId, nodeId] : [nodeId]));
    }
    // SQLite writes the page as JSON text in one value: no per-row work in
    // JavaScript, and the text goes into the response as it is. The inner
    // query walks the sequence index and stops after `limit` rows. The
    // aggregate has no ORDER BY of its own: a page's rows are distinct and may
    // come in any order (its cursor is its largest sequence), and an ordered
    // aggregate sorts its values, which drops their JSON subtype, so every row
    // object would have to be parsed again.
    const where = `${SEQUENCE_COLUMN} > ? AND ${SEQUENCE_COLUMN} <= ?${scope}${own}`;
    const { rows: [page] } = await adapter.execute({
      sql: `SELECT json_group_array(${pullRowJsonSql(info)}) ` +
        `AS rows, count(*) AS total, max(${SEQUENCE_COLUMN}) AS last FROM (` +
        `SELECT * FROM ${info.quoted} WHERE ${where} ORDER BY ${SEQUENCE_COLUMN} LIMIT ?)`,
      args: [after, newest, ...scopeArgs, ...ownArgs, limit],
    });
    const last = Number(page?.last ?? newest);
    let hasMore = false;
    if (Number(page?.total ?? 0) === limit && last < newest) {
      const { rows: [more] } = await adapter.execute({
        sql: `SELECT EXISTS (SELECT 1 FROM ${info.quoted} WHERE ${where}) AS more`,
        args: [last, newest, ...scopeArgs, ...ownArgs],
      });
      hasMore = Number(more?.more) === 1;
    }
    let rowsJson = String(page?.rows ?? "[]");
    if (blobColumnsOf(info).length > 0) {
      rowsJson = JSON.stringify(hexBlobsToBase64(info, JSON.parse(rowsJson)));
    }
    return {
      rowsJson,
      cursor: hasMore ? String(last) : String(newest),
      hasMore,
    };
  }

  return { schema, now, push, pull, pullJson, close: () => adapter.close() };
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
// rows one by one so that only the offending rows are rejected. A row was
// applied when it now holds the sequence number it was given: the numbers
// are new, so only rows this statement wrote can hold them.
async function upsertChunk(
  tx: SqlExecutor,
  info: TableInfo,
  columns: Parameters<typeof upsertStatement>[1],
  chunk: readonly Accepted[],
  numbers: readonly number[],
  results: PushResult[],
): Promise<Set<string>> {
  try {
    const { rowsAffected } = await tx.execute(
      upsertStatement(info, columns, chunk.map((a) => a.row), numbers),
    );
    if (rowsAffected === 0) return new Set();
    if (rowsAffected === chunk.length) return new Set(chunk.map((a) => a.row.id));
    const { rows: [found] } = await tx.execute({
      sql: `SELECT json_group_array(system_id) AS ids FROM ${info.quoted} ` +
        `WHERE ${SEQUENCE_COLUMN} BETWEEN ? AND ?`,
      args: [numbers[0]!, numbers.at(-1)!],
    });
    return new Set(JSON.parse(String(found?.ids ?? "[]")) as string[]);
  } catch (error) {
    if (!(error instanceof SyncError) || error.code !== "constraint") throw error;
  }
  const applied = new Set<string>();
  for (let i = 0; i < chunk.length; i++) {
    const { index, row } = chunk[i]!;
    try {
      const { rowsAffected } = await tx.execute(
        upsertStatement(info, columns, [row], [numbers[i]!]),
      );
      if (rowsAffected > 0) applied.add(row.id);
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

interface PageJson {
  readonly rowsJson: string;
  readonly cursor: string;
  readonly hasMore: boolean;
}

const rowJsonCache = new WeakMap<TableInfo, string>();

// The SQL expression of one pulled row as a JSON object (`PullRow`). Blobs
// come out as hex, which `hexBlobsToBase64` turns into the wire's base64.
function pullRowJsonSql(info: TableInfo): string {
  const cached = rowJsonCache.get(info);
  if (cached !== undefined) return cached;
  const fields = [
    `'id', system_id`,
    `'version', system_version`,
    `'createdAt', system_created_at`,
    `'deleted', ${jsonBooleanSql("is_deleted")}`,
    `'data', ${dataJsonSql(info)}`,
  ];
  if (info.perColumn) fields.push(`'columnVersions', json(${quoteId(COLUMN_VERSIONS)})`);
  const sql = `json_object(${fields.join(", ")})`;
  rowJsonCache.set(info, sql);
  return sql;
}

function hexBlobsToBase64(info: TableInfo, rows: PullRow[]): PullRow[] {
  const blobs = blobColumnsOf(info);
  for (const row of rows) {
    for (const column of blobs) {
      const hex = row.data[column.name];
      if (typeof hex !== "string") continue;
      row.data[column.name] = toBase64(fromHex(hex));
    }
  }
  return rows;
}
