/**
 * The statements that write a group of pushes together, and what their
 * answers say of each push. Pushes that share a commit (`group_commit.ts`)
 * also share statements: one UPSERT per table, round and column set carries
 * the rows of every push in the group, because a statement costs far more
 * than a row (preparing it, reading its JSON argument, returning its rows).
 *
 * Per table, the rows go in rounds: the first change of each row, then the
 * second change of each row changed twice (in one push or in two pushes of
 * the group), and so on, each round in push order — so the group writes what
 * the pushes one after another would have. Each UPSERT numbers its rows from
 * the stored sequence, in order, returns the rows it applied, and is
 * followed by the statement that moves the sequence on (`sequence.ts`). The
 * conflict clause decides `applied` or `stale`, and never writes a row
 * stored under another scope. Which rows it applied, the UPSERT returns; on
 * a table without a scope column, whose sequence has an index of its own,
 * the query after it answers their positions as one value instead (the rows
 * holding the numbers it gave), which spares a result row per row. After the writes, one query per push and
 * scoped table finds its rows stored under another principal's scope
 * (`forbidden`): a stored row's scope never changes, so what the query finds
 * at the end is what the push met.
 *
 * A push's rows in one statement hold a run of numbers no other push's rows
 * hold, so the numbers its applied rows got are answered as one range per
 * statement (`PushResponse.held`), merged where they touch: the range may
 * name numbers of its own stale changes, which no row holds.
 *
 * @example
 * ```ts
 * const plan = planPushes([{ accepted, principal }]);
 * const [outcome] = readPushes(plan, await adapter.batch(plan.statements));
 * outcome.applied; // position in the push → sequence number, for each applied change
 * ```
 *
 * @module
 */

import {
  type ColumnInfo,
  groupByColumns,
  type HeldRange,
  id,
  type NormalizedRow,
  raw,
  sql,
  type SqlResult,
  type SqlStatement,
  type TableInfo,
  upsertStatement,
} from "../src/internal.ts";
import { enforcedScope, othersStatement, type Principal, rowsOfOthers } from "./scope.ts";
import { advanceSequenceStatement, seq, SEQUENCE_BASE, SEQUENCE_COLUMN } from "./sequence.ts";

/** A change that passed the checks before SQL, at its position in its push. */
export interface Accepted {
  /** Its position in the push. */
  readonly index: number;
  /** The row it writes. */
  readonly row: NormalizedRow;
}

/** One push, judged: its accepted changes per table, and who pushes them. */
export interface PendingPush {
  /** The accepted changes, per table, in push order. */
  readonly accepted: ReadonlyMap<TableInfo, readonly Accepted[]>;
  /** Who is pushing. */
  readonly principal: Principal | undefined;
}

/** What the statements did with one push. */
export interface PushWrite {
  /** Position in the push → the sequence number its row got, for each applied change. */
  readonly applied: ReadonlyMap<number, number>;
  /** Positions of changes to rows stored under another principal's scope. */
  readonly forbidden: ReadonlySet<number>;
  /** The numbers the applied changes hold, as ranges. */
  readonly held: HeldRange[];
}

/** A change of one push of the group. */
export interface Member {
  /** The push's position in the group. */
  readonly push: number;
  /** The change. */
  readonly item: Accepted;
}

/** One UPSERT of the plan: its rows, and where its statement sits. */
export interface Chunk {
  readonly info: TableInfo;
  readonly columns: readonly ColumnInfo[];
  readonly members: readonly Member[];
  readonly scoped: boolean;
  /**
   * How the plan learns which rows it applied: the UPSERT returns them, or
   * (`"seek"`, where the sequence has an index of its own) the query right
   * after it answers their positions, from the numbers they now hold.
   */
  readonly applied: "returning" | "seek";
  /**
   * The index of its UPSERT in `statements`; the query of its applied rows
   * (`"seek"`) and the sequence's advance follow it.
   */
  readonly statement: number;
}

/** The statements of a group of pushes, and what each answers. */
export interface PushPlan {
  /** Run them in order, in one batch (or one transaction). */
  readonly statements: SqlStatement[];
  /** How many pushes the plan writes. */
  readonly pushes: number;
  /** The UPSERTs. */
  readonly chunks: Chunk[];
  /** Per push and scoped table: where its query for others' rows sits. */
  readonly others: {
    readonly push: number;
    readonly list: readonly Accepted[];
    readonly statement: number;
  }[];
}

/** Rows per UPSERT statement on the server. */
export const ROWS_PER_STATEMENT = 500;

/**
 * The statements writing `pushes` together, in order. With `returning`,
 * every UPSERT returns the rows it applied (a plan run statement by
 * statement, whose chunks may be written row by row).
 */
export function planPushes(
  pushes: readonly PendingPush[],
  { returning = false }: { readonly returning?: boolean } = {},
): PushPlan {
  const plan: PushPlan = { statements: [], pushes: pushes.length, chunks: [], others: [] };
  for (const [info, members] of membersByTable(pushes)) {
    // Scoped and unscoped writes take different UPSERTs (one server config
    // gives every push the same, but nothing here relies on it).
    for (const scoped of [false, true]) {
      const share = members.filter((m) =>
        (enforcedScope(info, pushes[m.push]!.principal) !== undefined) === scoped
      );
      // The sequence column has an index of its own only on tables without a scope.
      const applied = returning || info.def.scope !== undefined ? "returning" : "seek";
      for (const round of byOccurrence(share)) addRound(plan, info, round, { scoped, applied });
    }
  }
  pushes.forEach(({ accepted, principal }, push) => {
    for (const [info, list] of accepted) {
      const others = othersStatement(info, list.map((a) => a.row.id), principal);
      if (others === undefined) continue;
      plan.others.push({ push, list, statement: plan.statements.length });
      plan.statements.push(others);
    }
  });
  return plan;
}

/** What `answers` (one per statement of `plan`) say of each push, in group order. */
export function readPushes(plan: PushPlan, answers: readonly SqlResult[]): PushWrite[] {
  const writes = Array.from({ length: plan.pushes }, () => ({
    applied: new Map<number, number>(),
    forbidden: new Set<number>(),
    held: [] as HeldRange[],
  }));
  for (const chunk of plan.chunks) {
    const { members } = chunk;
    const numbers = appliedNumbers(chunk, answers);
    // Per push, the run of numbers its rows of this statement got.
    const runs = new Map<number, HeldRange>();
    for (const { push, item } of members) {
      const number = numbers.get(item.row.id);
      if (number === undefined) continue;
      writes[push]!.applied.set(item.index, number);
      const run = runs.get(push);
      runs.set(
        push,
        run === undefined ? [number, number] : [
          Math.min(run[0], number),
          Math.max(run[1], number),
        ],
      );
    }
    for (const [push, run] of runs) writes[push]!.held.push(run);
  }
  for (const { push, list, statement } of plan.others) {
    for (const position of rowsOfOthers(answers[statement]!)) {
      writes[push]!.forbidden.add(list[position]!.index);
    }
  }
  for (const write of writes) write.held = mergeRanges(write.held);
  return writes;
}

/** The UPSERT of a chunk's rows, numbered from the sequence. */
export function upsertOf(chunk: Omit<Chunk, "statement">): SqlStatement {
  return upsertStatement(chunk.info, chunk.columns, chunk.members.map((m) => m.item.row), {
    stamp: {
      column: SEQUENCE_COLUMN,
      base: SEQUENCE_BASE,
      returning: chunk.applied === "returning",
    },
    scoped: chunk.scoped,
  });
}

// The query, right after a chunk's UPSERT and before the sequence moves,
// answering the sequence's last number and the positions (in the chunk) of
// the rows that hold the numbers the UPSERT gave: the rows it applied. One
// value instead of a result row per row; the index on the sequence finds them.
function appliedPositionsStatement(info: TableInfo, count: number): SqlStatement {
  const base = raw(SEQUENCE_BASE);
  return sql`SELECT ${base} AS base, (SELECT json_group_array(${seq} - ${base} - 1)
    FROM ${id(info.name)} WHERE ${seq} > ${base} AND ${seq} <= ${base} + ${raw(String(count))})
    AS positions`;
}

// Row id → the number it holds, for each row `chunk` applied.
function appliedNumbers(chunk: Chunk, answers: readonly SqlResult[]): Map<string, number> {
  const numbers = new Map<string, number>();
  if (chunk.applied === "returning") {
    for (const row of answers[chunk.statement]!.rows) {
      numbers.set(String(row.system_id), Number(row[SEQUENCE_COLUMN]));
    }
    return numbers;
  }
  const answer = answers[chunk.statement + 1]!.rows[0];
  const base = Number(answer?.base);
  for (const position of JSON.parse(String(answer?.positions ?? "[]")) as number[]) {
    numbers.set(chunk.members[position]!.item.row.id, base + position + 1);
  }
  return numbers;
}

// The group's changes per table, in push order.
function membersByTable(pushes: readonly PendingPush[]): Map<TableInfo, Member[]> {
  const byTable = new Map<TableInfo, Member[]>();
  pushes.forEach(({ accepted }, push) => {
    for (const [info, list] of accepted) {
      const members = byTable.get(info) ?? [];
      for (const item of list) members.push({ push, item });
      byTable.set(info, members);
    }
  });
  return byTable;
}

// One round (at most one change per row): per column set, UPSERTs of at most
// ROWS_PER_STATEMENT rows, each followed by the sequence's advance.
function addRound(
  plan: PushPlan,
  info: TableInfo,
  round: readonly Member[],
  how: Pick<Chunk, "scoped" | "applied">,
) {
  const byRow = new Map(round.map((m) => [m.item.row, m]));
  for (const group of groupByColumns(info, round.map((m) => m.item.row))) {
    const members = group.rows.map((row) => byRow.get(row)!);
    for (let start = 0; start < members.length; start += ROWS_PER_STATEMENT) {
      const slice = members.slice(start, start + ROWS_PER_STATEMENT);
      const chunk = { info, columns: group.columns, members: slice, ...how };
      plan.chunks.push({ ...chunk, statement: plan.statements.length });
      plan.statements.push(upsertOf(chunk));
      if (how.applied === "seek") {
        plan.statements.push(appliedPositionsStatement(info, slice.length));
      }
      plan.statements.push(advanceSequenceStatement(slice.length));
    }
  }
}

// The changes in rounds: the first change of each row, then the second of
// each row changed twice, and so on, each round in push order.
function byOccurrence(list: readonly Member[]): Member[][] {
  const rounds: Member[][] = [];
  const seen = new Map<string, number>();
  for (const member of list) {
    const id = member.item.row.id;
    const occurrence = seen.get(id) ?? 0;
    seen.set(id, occurrence + 1);
    (rounds[occurrence] ??= []).push(member);
  }
  return rounds;
}

// Ranges sorted, those that touch or overlap merged.
function mergeRanges(ranges: HeldRange[]): HeldRange[] {
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [first, last] of ranges) {
    const end = merged.at(-1);
    if (end !== undefined && first <= end[1] + 1) end[1] = Math.max(end[1], last);
    else merged.push([first, last]);
  }
  return merged;
}
