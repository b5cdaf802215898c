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
import { describeValue } from "../src/values.ts";
import { groupByColumns, type NormalizedRow, normalizeRow, upsertStatement } from "../src/merge.ts";
import { dataJsonSql, jsonBooleanSql } from "../src/json_rows.ts";
import { migrate } from "../src/migrate.ts";
import type {
  HeldRange,
  PullRow,
  PullTableChanges,
  PushChange,
  PushResult,
} from "../src/protocol.ts";
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
  /**
   * {@linkcode ServerDatabase.push}, also answering which sequence numbers
   * the applied changes hold (`PushResponse.held`).
   */
  applyPush(changes: readonly PushChange[], options?: PushOptions): Promise<PushOutcome>;
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

/** What {@linkcode ServerDatabase.applyPush} did. */
export interface PushOutcome {
  /** One verdict per change, in order. */
  readonly results: PushResult[];
  /** The sequence numbers of the applied changes, as ranges. */
  readonly held: HeldRange[];
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
   * About how many bytes of rows one response may carry (default 4 MiB): a
   * page ends early, with `hasMore`, once its rows reach it, yet carries at
   * least one row.
   */
  readonly maxBytes?: number;
  /**
   * Ranges of the asker's own push responses (`PullRequest.held`): rows of
   * row-LWW tables still holding such a number are left out of its pages.
   */
  readonly held?: readonly HeldRange[];
}

/** Default byte budget of a pull response (`PullOptions.maxBytes`). */
export const DEFAULT_MAX_PULL_BYTES = 4 * 1024 * 1024;
// What a pulled row costs besides its values: keys, versions, flags.
const ROW_OVERHEAD_BYTES = 160;

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
  if (options.journalMode === "wal") await useWal(adapter);
  await migrate(adapter, schema, tables, "server");

  const reject = (table: string, id: string, code: string, message: string): PushResult => ({
    table,
    id,
    status: "rejected",
    code,
    message,
  });

  async function applyPush(
    changes: readonly PushChange[],
    { principal, maxDrift = defaultMaxDrift }: PushOptions = {},
  ): Promise<PushOutcome> {
    const results = new Array<PushResult>(changes.length);
    // Per row, the number of the last change applied to it: what it holds now.
    const heldNumbers = new Map<TableInfo, Map<string, number>>();
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
        const first = await readSequence(tx);
        let sequence = first;
        let highestApplied = first;
        for (const [info, list] of accepted) {
          const allowed = await withoutOthersRows(tx, info, list, principal, results);
          const scoped = principal !== undefined && info.def.scope !== undefined;
          // A row changed twice in one push is written in two rounds, each
          // judged right after its own statement: the later change must not
          // make the earlier one look stale (on a column table both can keep
          // columns).
          for (const round of byOccurrence(allowed)) {
            const byRow = new Map(round.map((a) => [a.row, a]));
            for (const group of groupByColumns(info, round.map((a) => a.row))) {
              const members = group.rows.map((row) => byRow.get(row)!);
              for (let start = 0; start < members.length; start += ROWS_PER_STATEMENT) {
                const chunk = members.slice(start, start + ROWS_PER_STATEMENT);
                const numbers = chunk.map(() => ++sequence);
                const applied = await upsertChunk(tx, info, group.columns, chunk, numbers, {
                  results,
                  scoped,
                });
                chunk.forEach(({ index, row }, i) => {
                  const number = numbers[i]!;
                  const held = applied.has(number);
                  if (held) {
                    let rows = heldNumbers.get(info);
                    if (rows === undefined) heldNumbers.set(info, rows = new Map());
                    rows.set(row.id, number);
                  }
                  if (held && number > highestApplied) highestApplied = number;
                  results[index] ??= {
                    table: info.name,
                    id: row.id,
                    status: held ? "applied" : "stale",
                  };
                });
              }
            }
          }
        }
        // Numbers given to stale changes are held by no row: the next push
        // may use them again, and a push that applied nothing leaves the
        // sequence where it was.
        if (highestApplied > first) {
          await tx.execute({
            sql: `INSERT INTO _sync_meta (key, value) VALUES ('sequence', ?) ` +
              `ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
            args: [String(highestApplied)],
          });
        }
      });
    }
    const numbers = [...heldNumbers.values()].flatMap((rows) => [...rows.values()]);
    return { results, held: toRanges(numbers) };
  }

  const push = async (changes: readonly PushChange[], options?: PushOptions) =>
    (await applyPush(changes, options)).results;

  async function pullJson(
    cursors: Readonly<Record<string, string | null>>,
    limit: number,
    options: PullOptions = {},
  ): Promise<string> {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`Pull limit must be a positive integer, got ${limit}`);
    }
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_PULL_BYTES;
    const parts: string[] = [];
    let budget = maxBytes;
    for (const [table, cursor] of Object.entries(cursors)) {
      const info = tables.get(table);
      if (info === undefined || !info.synced) {
        throw new SyncError("unknown_table", `Unknown synced table ${table}`, {
          details: { table },
        });
      }
      const page = await pullTable(info, cursor, limit, budget, options);
      budget -= page.rowsJson.length;
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

  // One table's page: the rows after `cursor`, at most `limit` of them and
  // about `budget` bytes of them, yet at least one whenever any is left and
  // budget remains (a response whose budget earlier tables used up answers
  // `hasMore` with no rows and the cursor unchanged).
  async function pullTable(
    info: TableInfo,
    cursor: string | null,
    limit: number,
    budget: number,
    { principal, held }: PullOptions,
  ): Promise<PageJson> {
    if (cursor !== null && !/^\d{1,15}$/.test(cursor)) {
      throw new SyncError(
        "invalid_change",
        `Invalid cursor ${describeValue(cursor)} for ${info.name}`,
        { details: { table: info.name } },
      );
    }
    let scope = "";
    const scopeArgs: SqlValue[] = [];
    if (info.def.scope !== undefined && principal !== undefined) {
      scope = ` AND ${quoteId(info.def.scope)} = ?`;
      scopeArgs.push(principal.id);
    }
    // The newest committed sequence first: sequences are assigned under the
    // write lock, so everything up to it is committed.
    const { rows: [top] } = await adapter.execute({
      sql: `SELECT max(${SEQUENCE_COLUMN}) AS top FROM ${info.quoted} WHERE 1 = 1${scope}`,
      args: scopeArgs,
    });
    const newest = top?.top === null || top?.top === undefined ? undefined : Number(top.top);
    const after = cursor === null ? 0 : Number(cursor);
    if (newest === undefined || newest <= after) {
      return { rowsJson: "[]", cursor: cursor ?? "0", hasMore: false };
    }
    if (budget <= 0) return { rowsJson: "[]", cursor: cursor ?? "0", hasMore: true };

    // SQLite writes the page as JSON text in one value: no per-row work in
    // JavaScript, and the text goes into the response as it is. The inner
    // query walks the sequence index and stops after `limit` rows, or at the
    // row that fills the byte budget: `pageEndSql` finds it from the stored
    // sizes of the values, without reading them. The aggregate has no ORDER
    // BY of its own: a page's rows are distinct and may come in any order
    // (its cursor is its largest sequence), and an ordered aggregate sorts
    // its values, which drops their JSON subtype, so every row object would
    // have to be parsed again.
    // Rows the asker holds as they are (the state its own push wrote, by the
    // sequence numbers that push answered with) are left out. A column
    // table's row may merge other replicas' columns into a push, so those
    // are always sent.
    let own = "";
    const ownArgs: SqlValue[] = [];
    if (held !== undefined && held.length > 0 && !info.perColumn) {
      own = ` AND NOT EXISTS (SELECT 1 FROM json_each(?) h WHERE ${SEQUENCE_COLUMN} ` +
        `BETWEEN h.value ->> 0 AND h.value ->> 1)`;
      ownArgs.push(JSON.stringify(held));
    }
    const where = `${SEQUENCE_COLUMN} > ? AND ${SEQUENCE_COLUMN} <= ?${scope}${own}`;
    const whereArgs = (from: number) => [from, newest, ...scopeArgs, ...ownArgs];
    const { rows: [page] } = await adapter.execute({
      sql: `SELECT json_group_array(${pullRowJsonSql(info)}) ` +
        `AS rows, count(*) AS total, max(${SEQUENCE_COLUMN}) AS last FROM (` +
        `SELECT * FROM ${info.quoted} WHERE ${where} AND ${SEQUENCE_COLUMN} <= ` +
        `coalesce((${pageEndSql(info, where)}), ?) ORDER BY ${SEQUENCE_COLUMN} LIMIT ?)`,
      args: [...whereArgs(after), ...whereArgs(after), limit, budget, newest, limit],
    });
    const last = Number(page?.last ?? newest);
    // `newest` is a row in scope: a page that stopped before it leaves more,
    // unless all that is left is the asker's own.
    let hasMore = last < newest;
    if (hasMore && own !== "") {
      const { rows: [more] } = await adapter.execute({
        sql: `SELECT EXISTS (SELECT 1 FROM ${info.quoted} WHERE ${where}) AS more`,
        args: whereArgs(last),
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

  return { schema, now, push, applyPush, pull, pullJson, close: () => adapter.close() };
}

// Switches the file to write-ahead logging. Another process opening the file
// at the same moment may hold it for a moment (SQLite then answers BUSY at
// once, without waiting): try again for up to about five seconds, unless that
// process has switched it already.
async function useWal(adapter: SqlAdapter): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      await adapter.execute({ sql: "PRAGMA journal_mode = WAL" });
      return;
    } catch (error) {
      const busy = /SQLITE_BUSY|database is locked/i.test(String((error as Error)?.message));
      if (!busy || attempt >= 50) throw error;
    }
    const { rows: [mode] } = await adapter.execute({ sql: "PRAGMA journal_mode" });
    if (String(Object.values(mode ?? {})[0]).toLowerCase() === "wal") return;
    await new Promise((resolve) => setTimeout(resolve, 20 + attempt * 4));
  }
}

// The changes in rounds: the first change of each row, then the second of
// each row changed twice, and so on, each round in push order.
function byOccurrence(list: readonly Accepted[]): Accepted[][] {
  const rounds: Accepted[][] = [];
  const seen = new Map<string, number>();
  for (const item of list) {
    const occurrence = seen.get(item.row.id) ?? 0;
    seen.set(item.row.id, occurrence + 1);
    (rounds[occurrence] ??= []).push(item);
  }
  return rounds;
}

// Numbers as the fewest ranges covering exactly them.
function toRanges(numbers: number[]): HeldRange[] {
  numbers.sort((a, b) => a - b);
  const ranges: [number, number][] = [];
  for (const n of numbers) {
    const last = ranges.at(-1);
    if (last !== undefined && n === last[1] + 1) last[1] = n;
    else if (last === undefined || n > last[1]) ranges.push([n, n]);
  }
  return ranges;
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
// that would change someone else's row, or move it out of their scope. The
// comparison happens inside SQL, which answers with positions in `list`: an
// id never makes a round trip through a driver that could alter it.
async function withoutOthersRows(
  tx: SqlExecutor,
  info: TableInfo,
  list: readonly Accepted[],
  principal: Principal | undefined,
  results: PushResult[],
): Promise<Accepted[]> {
  if (info.def.scope === undefined || principal === undefined) return [...list];
  const { rows } = await tx.execute({
    sql: `SELECT json_group_array(j.key) AS foreign_rows FROM json_each(?) j ` +
      `JOIN ${info.quoted} t ON t.system_id = j.value WHERE t.${quoteId(info.def.scope)} IS NOT ?`,
    args: [JSON.stringify(list.map((a) => a.row.id)), principal.id],
  });
  const foreign = new Set(JSON.parse(String(rows[0]?.foreign_rows ?? "[]")) as number[]);
  const allowed: Accepted[] = [];
  list.forEach((item, position) => {
    if (!foreign.has(position)) {
      allowed.push(item);
      return;
    }
    results[item.index] = {
      table: info.name,
      id: item.row.id,
      status: "rejected",
      code: "forbidden",
      message: `Row ${item.row.id} of ${info.name} belongs to another scope`,
    };
  });
  return allowed;
}

// Runs one UPSERT; when the database refuses it (a constraint), retries the
// rows one by one so that only the offending rows are rejected. Returns the
// sequence numbers the rows hold afterwards: the numbers are new, so a change
// was applied exactly when its own number is held (a later change to the same
// row in the same push takes the row, and the number, over).
async function upsertChunk(
  tx: SqlExecutor,
  info: TableInfo,
  columns: Parameters<typeof upsertStatement>[1],
  chunk: readonly Accepted[],
  numbers: readonly number[],
  { results, scoped }: { results: PushResult[]; scoped: boolean },
): Promise<Set<number>> {
  const upsert = (rows: readonly Accepted[], sequence: readonly number[]) =>
    tx.execute(upsertStatement(info, columns, rows.map((a) => a.row), { sequence, scoped }));
  const held = async (from: number, to: number) => {
    const { rows: [found] } = await tx.execute({
      sql: `SELECT json_group_array(${SEQUENCE_COLUMN}) AS numbers FROM ${info.quoted} ` +
        `WHERE ${SEQUENCE_COLUMN} BETWEEN ? AND ?`,
      args: [from, to],
    });
    return new Set(JSON.parse(String(found?.numbers ?? "[]")) as number[]);
  };
  try {
    const { rowsAffected } = await upsert(chunk, numbers);
    if (rowsAffected === 0) return new Set();
    // Distinct rows each count once, so all of them were applied.
    if (
      rowsAffected === chunk.length && new Set(chunk.map((a) => a.row.id)).size === chunk.length
    ) {
      return new Set(numbers);
    }
    return await held(numbers[0]!, numbers.at(-1)!);
  } catch (error) {
    if (!(error instanceof SyncError) || error.code !== "constraint") throw error;
  }
  for (let i = 0; i < chunk.length; i++) {
    const { index, row } = chunk[i]!;
    try {
      await upsert([chunk[i]!], [numbers[i]!]);
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
  return await held(numbers[0]!, numbers.at(-1)!);
}

// The sequence of the row at which a page reaches its byte budget (the
// first `limit` rows after the cursor, in order), or NULL when it does not.
// Sizes are the values' stored lengths (hex doubles a blob), which SQLite
// knows without reading the values; binds: the page's WHERE arguments, the
// limit, then the budget.
function pageEndSql(info: TableInfo, where: string): string {
  const sizes = info.columns.map((c) =>
    `coalesce(octet_length(${c.quoted}), 0)${c.kind === "blob" ? " * 2" : ""}`
  );
  const size = [`${ROW_OVERHEAD_BYTES}`, `octet_length(system_id)`, ...sizes].join(" + ");
  return `SELECT ${SEQUENCE_COLUMN} FROM (SELECT ${SEQUENCE_COLUMN}, sum(${size}) OVER ` +
    `(ORDER BY ${SEQUENCE_COLUMN} ROWS UNBOUNDED PRECEDING) AS running FROM ${info.quoted} ` +
    `WHERE ${where} ORDER BY ${SEQUENCE_COLUMN} LIMIT ?) WHERE running >= ? ` +
    `ORDER BY ${SEQUENCE_COLUMN} LIMIT 1`;
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
