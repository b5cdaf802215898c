/**
 * The sequence ranges a replica holds as the server does: a push response
 * names the server sequence numbers its applied changes were given
 * (`PushResponse.held`), and the next pulls name them back
 * (`PullRequest.held`) so the server does not send the replica's own rows
 * back to it.
 *
 * They are kept in memory, per database, and are only an optimisation: a
 * restarted process, or a database file restored from an older copy, has
 * none of them and gets its rows back, which the merge takes as no change.
 * That is also why the list may be cut short: at most
 * {@linkcode MAX_HELD_RANGES}, the newest kept, since an older range
 * forgotten only means its rows are sent once more.
 *
 * @example
 * ```ts
 * const held = createHeldRanges();
 * held.record(db, [[5, 9]]);
 * held.forPull(db, { tasks: "7" }); // [[5, 9]]
 * held.forPull(db, { tasks: "9" }); // []: every cursor has passed it
 * ```
 *
 * @module
 */

import { type HeldRange, MAX_HELD_RANGES } from "./protocol.ts";

/** The held ranges of every database a transport serves. */
export interface HeldRanges {
  /** Adds the ranges of one push response of `db` to those it holds. */
  record(db: object, ranges: readonly HeldRange[]): void;
  /**
   * The ranges to name in a pull of `db` from `cursors`: those below the
   * lowest cursor are forgotten first (every table has passed them).
   */
  forPull(db: object, cursors: Readonly<Record<string, string | null>>): HeldRange[];
}

/**
 * Creates an empty store of held ranges, keyed by database object (weakly:
 * a closed and dropped database takes its ranges with it).
 *
 * @example
 * ```ts
 * const held = createHeldRanges();
 * held.record(db, response.held ?? []);
 * const request = { ...pull, held: held.forPull(db, pull.cursors) };
 * ```
 */
export function createHeldRanges(): HeldRanges {
  const byDatabase = new WeakMap<object, HeldRange[]>();
  return {
    record(db, ranges) {
      byDatabase.set(db, mergeHeldRanges(byDatabase.get(db) ?? [], ranges));
    },
    forPull(db, cursors) {
      const held = pruneHeldRanges(byDatabase.get(db) ?? [], cursors);
      byDatabase.set(db, held);
      return held;
    },
  };
}

/**
 * The union of two range lists, sorted, overlapping and touching ranges
 * joined, at most {@linkcode MAX_HELD_RANGES} of them: the newest (highest)
 * are kept.
 *
 * @example
 * ```ts
 * mergeHeldRanges([[1, 3]], [[4, 6], [9, 9]]); // [[1, 6], [9, 9]]
 * ```
 */
export function mergeHeldRanges(
  ranges: readonly HeldRange[],
  more: readonly HeldRange[],
): HeldRange[] {
  const sorted = [...ranges, ...more].sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [first, last] of sorted) {
    const top = merged.at(-1);
    if (top !== undefined && first <= top[1] + 1) top[1] = Math.max(top[1], last);
    else merged.push([first, last]);
  }
  return merged.slice(-MAX_HELD_RANGES);
}

/**
 * The ranges some cursor has not yet passed: those ending above the lowest
 * of `cursors` (a `null` cursor counts as 0). With no cursor at all nothing
 * is pulled, so nothing is kept.
 *
 * @example
 * ```ts
 * pruneHeldRanges([[1, 4], [6, 8]], { tasks: "5", notes: "9" }); // [[6, 8]]
 * ```
 */
export function pruneHeldRanges(
  ranges: readonly HeldRange[],
  cursors: Readonly<Record<string, string | null>>,
): HeldRange[] {
  let floor = Infinity;
  for (const cursor of Object.values(cursors)) floor = Math.min(floor, Number(cursor ?? 0));
  return ranges.filter(([, last]) => last > floor);
}
