/**
 * Group commit: the writes that reach one endpoint instance while a write is
 * running are applied together in the next one — one batch, one commit, one
 * sync to disk, one round trip to a remote database — and each gets back its
 * own result. How writes are put together is the caller's (`push_plan.ts`
 * merges pushes into shared statements, as if applied one after another).
 *
 * The batch is one transaction: when it fails, nothing of it was
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
 * const group = createGroupCommit((pushes: PendingPush[]) => commitTogether(pushes));
 * const [a, b] = await Promise.all([group.write(first), group.write(second)]); // one batch
 * ```
 *
 * @module
 */

/** Commits writes in shared batches: {@linkcode createGroupCommit}. */
export interface GroupCommit<W, R> {
  /**
   * Commits `write`, possibly together with others, and resolves with its
   * own result once the batch holding it committed. `weight` (default 1) is
   * what it counts against {@linkcode GroupCommitOptions.maxWeight}.
   */
  write(write: W, weight?: number): Promise<R>;
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

interface Pending<W, R> {
  readonly write: W;
  readonly weight: number;
  readonly resolve: (result: R) => void;
  readonly reject: (error: unknown) => void;
}

const DEFAULT_MAX_WEIGHT = 10_000;

// The end of the current turn of the event loop, where the runtime has a way to wait for it.
const nextTurn: (run: () => void) => void = (() => {
  const immediate = (globalThis as { setImmediate?: (run: () => void) => unknown }).setImmediate;
  return immediate === undefined ? (run) => setTimeout(run, 0) : (run) => immediate(run);
})();

/**
 * Commits writes with `commit`, one batch at a time: `commit(writes)` must
 * apply all of them in one transaction (all or none) and answer one result
 * per write, in order.
 *
 * @example
 * ```ts
 * const group = createGroupCommit(async (rows: string[]) => {
 *   await adapter.batch(rows.map((row) => ({ sql: "INSERT INTO t VALUES (?)", args: [row] })));
 *   return rows.map(() => true);
 * });
 * await Promise.all([group.write("a"), group.write("b")]); // one batch
 * ```
 */
export function createGroupCommit<W, R>(
  commit: (writes: readonly W[]) => Promise<readonly R[]>,
  options: GroupCommitOptions = {},
): GroupCommit<W, R> {
  const maxWeight = options.maxWeight ?? DEFAULT_MAX_WEIGHT;
  const queue: Pending<W, R>[] = [];
  let draining = false;

  // Commits `group` as one batch; if it fails, each of its writes alone.
  const commitGroup = async (group: readonly Pending<W, R>[]): Promise<void> => {
    let results: readonly R[];
    try {
      results = await commit(group.map((p) => p.write));
    } catch (error) {
      if (group.length === 1) return group[0]!.reject(error);
      for (const pending of group) await commitGroup([pending]);
      return;
    }
    group.forEach((pending, i) => pending.resolve(results[i]!));
  };

  // The writes waiting, up to `maxWeight` of them (at least one).
  const take = (): Pending<W, R>[] => {
    let weight = 0;
    let count = 0;
    while (count < queue.length && (count === 0 || weight + queue[count]!.weight <= maxWeight)) {
      weight += queue[count++]!.weight;
    }
    return queue.splice(0, count);
  };

  const drain = async (): Promise<void> => {
    while (queue.length > 0) await commitGroup(take());
    draining = false;
  };

  return {
    write: (write, weight = 1) =>
      new Promise<R>((resolve, reject) => {
        queue.push({ write, weight, resolve, reject });
        if (draining) return;
        draining = true;
        nextTurn(() => void drain());
      }),
  };
}
