/**
 * A push on the server: a verdict per change, and the accepted changes
 * written in one write transaction, each numbered from the change sequence
 * (`sequence.ts`).
 *
 * First every change is judged on its own, before any SQL: an unknown table,
 * a value that breaks a row rule (`encodeChange`: the valibot schemas at the
 * door checked the rest), a version more than `maxDrift` ahead of server
 * time (`clock_drift`) or a row outside the principal's scope (`forbidden`)
 * is rejected alone. Then, inside the transaction, per table: rows stored
 * under another scope are rejected (`forbidden`, one query), and the rest go
 * out as multi-row UPSERTs, at most {@linkcode ROWS_PER_STATEMENT} rows each,
 * whose conflict clause decides `applied` or `stale`. Each row written gets
 * a new number, so a change was applied exactly when its row holds its
 * number afterwards. When the database refuses a statement (a constraint
 * the operator added), its rows are written one by one so that only the
 * offending ones are rejected (`constraint`).
 *
 * A row changed twice in one push is written in two rounds, each judged
 * right after its own statement: the later change must not make the earlier
 * one look stale (on a column table both can keep columns).
 *
 * Numbers given to stale changes are held by no row: the next push may use
 * them again, and a push that applied nothing leaves the sequence where it
 * was. The numbers the rows hold at the end are answered as ranges
 * (`PushResponse.held`).
 *
 * @example
 * ```ts
 * const { results, held } = await applyPush(adapter, tables, request.changes, {
 *   principal,
 *   maxDrift: 60_000,
 *   serverTime: Date.now(),
 * });
 * ```
 *
 * @module
 */

import {
  type ColumnInfo,
  encodeChange,
  groupByColumns,
  type HeldRange,
  id,
  type NormalizedRow,
  parseHlc,
  type PushChange,
  type PushResult,
  type RejectionCode,
  sql,
  type SqlAdapter,
  type SqlExecutor,
  SyncError,
  type SyncErrorCode,
  type TableInfo,
  upsertStatement,
} from "../src/internal.ts";
import {
  enforcedScope,
  othersRowMessage,
  type Principal,
  rowsOfOthers,
  scopeViolation,
} from "./scope.ts";
import { readSequence, seq, SEQUENCE_COLUMN, storeSequenceStatement } from "./sequence.ts";

/** What a push did: {@linkcode applyPush}'s answer. */
export interface PushOutcome {
  /** One verdict per change, in order. */
  readonly results: PushResult[];
  /** The sequence numbers the applied changes hold, as ranges. */
  readonly held: HeldRange[];
}

/** How one push is judged. */
export interface PushContext {
  /** Who is pushing: scoped tables accept only this principal's rows. */
  readonly principal: Principal | undefined;
  /** How far (ms) a version may be ahead of `serverTime`. */
  readonly maxDrift: number;
  /** The server's wall clock (ms) as the push arrived. */
  readonly serverTime: number;
}

/** Rows per UPSERT statement on the server. */
const ROWS_PER_STATEMENT = 500;

// The codes `encodeChange` refuses a row with: each is a rejection code too.
const ROW_RULE_CODES = [
  "unknown_column",
  "invalid_value",
  "invalid_version",
  "invalid_change",
] as const satisfies readonly (RejectionCode & SyncErrorCode)[];

function isRowRuleCode(code: SyncErrorCode): code is (typeof ROW_RULE_CODES)[number] {
  return (ROW_RULE_CODES as readonly string[]).includes(code);
}

// A change that passed the checks before SQL, at its position in the push.
interface Accepted {
  readonly index: number;
  readonly row: NormalizedRow;
}

// What the write phase of one push keeps as it goes.
interface PushState {
  readonly principal: Principal | undefined;
  readonly results: PushResult[];
  // Per table and row, the number of the last change applied to it: what it holds now.
  readonly held: Map<TableInfo, Map<string, number>>;
  // The last number given out.
  sequence: number;
  // The highest number a row holds.
  highest: number;
}

/**
 * Applies `changes` (already checked by the protocol schemas): one verdict
 * per change, and the accepted ones written in one transaction.
 */
export async function applyPush(
  adapter: SqlAdapter,
  tables: ReadonlyMap<string, TableInfo>,
  changes: readonly PushChange[],
  context: PushContext,
): Promise<PushOutcome> {
  const results = new Array<PushResult>(changes.length);
  const accepted = new Map<TableInfo, Accepted[]>();
  changes.forEach((change, index) => {
    const verdict = judge(tables.get(change.table), change, context);
    if (!("row" in verdict)) {
      results[index] = verdict;
      return;
    }
    const list = accepted.get(verdict.info) ?? [];
    list.push({ index, row: verdict.row });
    accepted.set(verdict.info, list);
  });
  const state: PushState = {
    principal: context.principal,
    results,
    held: new Map(),
    sequence: 0,
    highest: 0,
  };
  if (accepted.size > 0) await adapter.transaction((tx) => writeAccepted(tx, accepted, state));
  const numbers = [...state.held.values()].flatMap((rows) => [...rows.values()]);
  return { results, held: toRanges(numbers) };
}

// The verdict on one change before any SQL: a rejection, or its row to write.
function judge(
  info: TableInfo | undefined,
  change: PushChange,
  { principal, maxDrift, serverTime }: PushContext,
): PushResult | { readonly info: TableInfo; readonly row: NormalizedRow } {
  if (info === undefined || !info.synced) {
    return rejected(change.table, change.id, "unknown_table", "Unknown synced table");
  }
  try {
    const row = encodeChange(info, change);
    const lead = parseHlc(row.version).ms - serverTime;
    if (lead > maxDrift) {
      return rejected(
        info.name,
        row.id,
        "clock_drift",
        `Version ${row.version} is ${lead} ms ahead of server time ${serverTime} (maxDrift ${maxDrift} ms)`,
      );
    }
    const violation = scopeViolation(info, row, principal);
    if (violation !== undefined) return rejected(info.name, row.id, "forbidden", violation);
    return { info, row };
  } catch (error) {
    if (!(error instanceof SyncError) || !isRowRuleCode(error.code)) throw error;
    return rejected(info.name, change.id, error.code, error.message);
  }
}

function rejected(table: string, id: string, code: RejectionCode, message: string): PushResult {
  return { table, id, status: "rejected", code, message };
}

// The write phase, inside the push's transaction: numbers from the stored
// sequence on, stored back when a row kept a new one.
async function writeAccepted(
  tx: SqlExecutor,
  accepted: ReadonlyMap<TableInfo, readonly Accepted[]>,
  state: PushState,
): Promise<void> {
  const first = await readSequence(tx);
  state.sequence = state.highest = first;
  for (const [info, list] of accepted) {
    const foreign = await rowsOfOthers(tx, info, list.map((a) => a.row.id), state.principal);
    const allowed = list.filter((item, position) => {
      if (!foreign.has(position)) return true;
      state.results[item.index] = rejected(
        info.name,
        item.row.id,
        "forbidden",
        othersRowMessage(info, item.row.id),
      );
      return false;
    });
    for (const round of byOccurrence(allowed)) await writeRound(tx, info, round, state);
  }
  if (state.highest > first) await tx.execute(storeSequenceStatement(state.highest));
}

// One round (at most one change per row): per column set, UPSERTs of at
// most ROWS_PER_STATEMENT rows, each numbered and judged by what it applied.
async function writeRound(
  tx: SqlExecutor,
  info: TableInfo,
  round: readonly Accepted[],
  state: PushState,
): Promise<void> {
  const byRow = new Map(round.map((a) => [a.row, a]));
  const scoped = enforcedScope(info, state.principal) !== undefined;
  for (const group of groupByColumns(info, round.map((a) => a.row))) {
    const members = group.rows.map((row) => byRow.get(row)!);
    for (let start = 0; start < members.length; start += ROWS_PER_STATEMENT) {
      const slice = members.slice(start, start + ROWS_PER_STATEMENT);
      const numbers = slice.map(() => ++state.sequence);
      const chunk: Chunk = { info, columns: group.columns, members: slice, numbers, scoped };
      const applied = await upsertChunk(tx, chunk, state.results);
      recordVerdicts(chunk, applied, state);
    }
  }
}

// One UPSERT's rows, with the numbers they are given.
interface Chunk {
  readonly info: TableInfo;
  readonly columns: readonly ColumnInfo[];
  readonly members: readonly Accepted[];
  readonly numbers: readonly number[];
  readonly scoped: boolean;
}

// `applied` or `stale` for each change of `chunk` not rejected already, and
// the number each applied row now holds.
function recordVerdicts(chunk: Chunk, applied: ReadonlySet<number>, state: PushState): void {
  const { info } = chunk;
  chunk.members.forEach(({ index, row }, i) => {
    const number = chunk.numbers[i]!;
    const held = applied.has(number);
    if (held) {
      let rows = state.held.get(info);
      if (rows === undefined) state.held.set(info, rows = new Map());
      rows.set(row.id, number);
      if (number > state.highest) state.highest = number;
    }
    state.results[index] ??= { table: info.name, id: row.id, status: held ? "applied" : "stale" };
  });
}

// Runs the chunk's UPSERT; when the database refuses it (a constraint),
// retries the rows one by one so that only the offending rows are rejected.
// Returns the sequence numbers the rows hold afterwards: the numbers are
// new, so a change was applied exactly when its own number is held (a later
// change to the same row in the same push takes the row, and the number, over).
async function upsertChunk(
  tx: SqlExecutor,
  chunk: Chunk,
  results: PushResult[],
): Promise<Set<number>> {
  const { info, members, numbers } = chunk;
  const upsert = (rows: readonly Accepted[], stamped: readonly number[]) =>
    tx.execute(upsertStatement(info, chunk.columns, rows.map((a) => a.row), {
      stamp: { column: SEQUENCE_COLUMN, numbers: stamped },
      scoped: chunk.scoped,
    }));
  // The chunk's numbers that rows hold: one query, answered as one JSON value.
  const held = async () => {
    const { rows: [found] } = await tx.execute(
      sql`SELECT json_group_array(${seq}) AS numbers FROM ${id(info.name)}
        WHERE ${seq} BETWEEN ${numbers[0]!} AND ${numbers.at(-1)!}`,
    );
    return new Set(JSON.parse(String(found?.numbers ?? "[]")) as number[]);
  };
  try {
    const { rowsAffected } = await upsert(members, numbers);
    if (rowsAffected === 0) return new Set();
    // Distinct rows each count once, so all of them were applied.
    const distinct = new Set(members.map((a) => a.row.id)).size === members.length;
    if (rowsAffected === members.length && distinct) return new Set(numbers);
    return await held();
  } catch (error) {
    if (!isConstraint(error)) throw error;
  }
  for (let i = 0; i < members.length; i++) {
    const { index, row } = members[i]!;
    try {
      await upsert([members[i]!], [numbers[i]!]);
    } catch (error) {
      if (!isConstraint(error)) throw error;
      results[index] = rejected(info.name, row.id, "constraint", error.message);
    }
  }
  return await held();
}

function isConstraint(error: unknown): error is SyncError {
  return error instanceof SyncError && error.code === "constraint";
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
