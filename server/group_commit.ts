/**
 * Group commit: the writes that reach one endpoint instance while a write is
 * running are applied together in the next one — one batch, one commit, one
 * sync to disk, one round trip to a remote database — and each gets back the
 * results of its own statements.
 *
 * A write's statements stay together and in order inside the batch, so each
 * write is atomic as before, and sees the state the writes before it in the
 * batch left. The batch is one transaction: when it fails, nothing of it was
 * applied, and each of its writes is run again alone, so a failing write
 * (a constraint an operator added, a value the database refuses) fails by
 * itself and takes no other down. A write is answered only after the batch
 * that holds it committed: what it reports is on disk (as durable as the
 * database's `synchronous` setting makes a commit).
 *
 * A write that finds none running waits for the current turn of the event
 * loop to end (`setImmediate`, else a zero timeout) before it starts: pushes
 * whose bodies arrived together then share a commit even on a local file,
 * whose writes run synchronously and so never overlap.
 *
 * @example
 * ```ts
 * const group = createGroupCommit(adapter);
 * const [a, b] = await Promise.all([group.write(first), group.write(second)]); // one batch
 * ```
 *
 * @module
 */

import type { SqlAdapter, SqlResult, SqlStatement } from "../src/internal.ts";

/** Writes statements in shared batches: {@linkcode createGroupCommit}. */
export interface GroupCommit {
  /**
   * Runs `statements` in order in a write batch, possibly with other writes
   * before and after them, and resolves with their own results once the
   * batch committed. `weight` (default: the statement count) is what the
   * write counts against {@linkcode GroupCommitOptions.maxWeight}.
   */
  write(statements: readonly SqlStatement[], weight?: number): Promise<SqlResult[]>;
}

/** Options of {@linkcode createGroupCommit}. */
export interface GroupCommitOptions {
  /**
   * How much one batch holds at most, in weights (default 10,000); a write
   * heavier than that still goes, alone. Bounds the batch's size and the
   * time the write lock is held.
   */
  readonly maxWeight?: number;
}

interface Pending {
  readonly statements: readonly SqlStatement[];
  readonly weight: number;
  readonly resolve: (results: SqlResult[]) => void;
  readonly reject: (error: unknown) => void;
}

const DEFAULT_MAX_WEIGHT = 10_000;

// The end of the current turn of the event loop, where the runtime has a way to wait for it.
const nextTurn: (run: () => void) => void = (() => {
  const immediate = (globalThis as { setImmediate?: (run: () => void) => unknown }).setImmediate;
  return immediate === undefined ? (run) => setTimeout(run, 0) : (run) => immediate(run);
})();

/**
 * Writes through `adapter` in shared batches, one batch at a time.
 *
 * @example
 * ```ts
 * const group = createGroupCommit(adapter);
 * const [result] = await group.write([{ sql: "INSERT INTO t VALUES (?)", args: [1] }]);
 * ```
 */
export function createGroupCommit(
  adapter: SqlAdapter,
  options: GroupCommitOptions = {},
): GroupCommit {
  const maxWeight = options.maxWeight ?? DEFAULT_MAX_WEIGHT;
  const queue: Pending[] = [];
  let draining = false;

  // Commits `group` as one batch; if it fails, each of its writes alone.
  const commit = async (group: readonly Pending[]): Promise<void> => {
    let results: SqlResult[];
    try {
      results = await adapter.batch(group.flatMap((p) => p.statements));
    } catch (error) {
      if (group.length === 1) return group[0]!.reject(error);
      for (const pending of group) await commit([pending]);
      return;
    }
    let offset = 0;
    for (const pending of group) {
      pending.resolve(results.slice(offset, offset += pending.statements.length));
    }
  };

  // The writes waiting, up to `maxWeight` of them (at least one).
  const take = (): Pending[] => {
    let weight = 0;
    let count = 0;
    while (count < queue.length && (count === 0 || weight + queue[count]!.weight <= maxWeight)) {
      weight += queue[count++]!.weight;
    }
    return queue.splice(0, count);
  };

  const drain = async (): Promise<void> => {
    while (queue.length > 0) await commit(take());
    draining = false;
  };

  return {
    write: (statements, weight = statements.length) =>
      new Promise<SqlResult[]>((resolve, reject) => {
        queue.push({ statements, weight, resolve, reject });
        if (draining) return;
        draining = true;
        nextTurn(() => void drain());
      }),
  };
}
