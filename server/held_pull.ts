/**
 * A pull as the endpoint serves it: answered from what the instance knows
 * when there is nothing new, read from the database otherwise, and, when
 * asked to `wait`, held until a change the asker may pull commits.
 *
 * 1. Cursors that have all reached the sequence the instance knows as fresh
 *    (`change_feed.ts`) have nothing new: the empty pages are the answer,
 *    without a database round trip. Knowledge gone stale is renewed by the
 *    next read; pulls arriving while a read is under way wait for what it
 *    learns, rather than each reading pages of its own.
 * 2. Otherwise the pages are read (`pull.ts`), one round trip, and what the
 *    snapshot says of the sequence is learnt. Pages with rows, or with more,
 *    are the answer.
 * 3. An empty answer with `wait` left is held: the cursors move to the
 *    snapshot's sequence and the pull waits for the sequence to pass them,
 *    then reads again (back to 2). When the wait elapses — or the client
 *    goes away, or the server ends held pulls — the answer is the empty
 *    pages at the cursors reached.
 *
 * A woken pull reads its pages again even when the change was another
 * principal's: whether it may see a change is decided inside SQL only. The
 * pulls one commit wakes that ask the same (principal, cursors, limit,
 * held ranges) share one read, which starts after that commit.
 *
 * @example
 * ```ts
 * const pull = createHeldPull({ reads: adapter, tables, feed, interval: 200 });
 * const json = await pull({ tasks: "42" }, 1_000, { principal, wait: 20_000, signal });
 * ```
 *
 * @module
 */

import type { SqlExecutor, TableInfo } from "../src/internal.ts";
import { type ChangeFeed, sleep, type Touched } from "./change_feed.ts";
import {
  type AskedTable,
  askedTables,
  emptyPagesJson,
  type PulledPages,
  type PullOptions,
  pullPages,
} from "./pull.ts";

/** Options of a pull that may be held. */
export interface HeldPullOptions extends PullOptions {
  /**
   * How long (ms) to hold a pull that has nothing new (default 0: answer at
   * once). The endpoint bounds it by `maxPullWait`.
   */
  readonly wait?: number;
  /** Ends the hold early (the client went away): the empty pages are answered. */
  readonly signal?: AbortSignal;
}

/** What {@linkcode createHeldPull} needs. */
export interface HeldPullSource {
  /** Where pages are read. */
  readonly reads: SqlExecutor;
  /** The tables served. */
  readonly tables: ReadonlyMap<string, TableInfo>;
  /** The instance's knowledge of the sequence. */
  readonly feed: ChangeFeed;
  /** How long (ms) to wait before reading again a replica found behind this instance's commits. */
  readonly interval: number;
  /** The server's clock (ms). */
  readonly now: () => number;
  /** Maps a failed read (a replica not ready yet, say) to the error answered. */
  readonly readFailed?: (error: unknown) => never;
}

/** A pull: the JSON text of `PullResponse.changes`. */
export type HeldPull = (
  cursors: Readonly<Record<string, string | null>>,
  limit: number,
  options?: HeldPullOptions,
) => Promise<string>;

/**
 * Creates the endpoint's pull over `source`.
 *
 * @example
 * ```ts
 * const pull = createHeldPull({ reads, tables, feed, interval: 200, now: Date.now });
 * ```
 */
export function createHeldPull(source: HeldPullSource): HeldPull {
  const { feed, now } = source;
  // Reads of pulls woken by the same commit that ask the same.
  const shared = new Map<string, Promise<PulledPages>>();

  const read = (asked: readonly AskedTable[], limit: number, options: PullOptions) => {
    const startedAt = now();
    const pages = pullPages(source.reads, asked, limit, options).catch(
      source.readFailed ?? ((error) => Promise.reject(error)),
    );
    // The snapshot's sequence is what the instance knows next; pulls that
    // come meanwhile and find the knowledge stale wait for it.
    feed.track(pages.then((p) => p.sequence), startedAt);
    return pages;
  };
  const readWoken = (asked: readonly AskedTable[], limit: number, options: PullOptions) => {
    const key = JSON.stringify([
      feed.fresh() ?? null,
      options.principal?.id ?? null,
      limit,
      options.maxBytes ?? null,
      options.held ?? null,
      asked.map((a) => [a.info.name, a.cursor]),
    ]);
    let pages = shared.get(key);
    if (pages === undefined) {
      pages = read(asked, limit, options).finally(() => shared.delete(key));
      shared.set(key, pages);
    }
    return pages;
  };

  return async (cursors, limit, options = {}) => {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`Pull limit must be a positive integer, got ${limit}`);
    }
    let asked = askedTables(source.tables, cursors);
    const until = now() + Math.max(0, options.wait ?? 0);
    const { signal } = options;
    let woken = false;
    for (;;) {
      let known = feed.fresh();
      if (known === undefined && !woken) {
        // Another pull's read is under way: what it learns may answer this one.
        await feed.pending();
        known = feed.fresh();
      }
      const after = lowest(asked);
      if (known === undefined || after < known) {
        const pages = await (woken ? readWoken : read)(asked, limit, options);
        if (!pages.empty) return pages.json;
        asked = caughtUp(asked, pages.sequence);
        // A replica behind this instance's own commits: read it again later.
        if (pages.sequence < (feed.fresh() ?? 0)) await sleep(source.interval, signal);
      }
      if (now() >= until || signal?.aborted) return emptyPagesJson(asked);
      woken = await feed.waitPast(lowest(asked), until, signal, concerning(asked, options));
      if (!woken) return emptyPagesJson(asked);
    }
  };
}

// Whether a commit that wrote `touched` may concern a pull of `asked`: it
// wrote one of the tables, and for a scoped table rows of the asker's scope
// (or of scopes not known).
function concerning(
  asked: readonly AskedTable[],
  { principal }: PullOptions,
): (touched: Touched) => boolean {
  return (touched) =>
    asked.some(({ info }) => {
      if (!touched.has(info.name)) return false;
      const scopes = touched.get(info.name);
      return scopes === undefined || principal === undefined || info.def.scope === undefined ||
        scopes.has(principal.id);
    });
}

// The lowest sequence number the asked cursors stand for.
function lowest(asked: readonly AskedTable[]): number {
  let after = Infinity;
  for (const table of asked) after = Math.min(after, table.after);
  return after === Infinity ? 0 : after;
}

// The cursors an empty answer read at `sequence` moves to (what its pages say).
function caughtUp(asked: readonly AskedTable[], sequence: number): AskedTable[] {
  return asked.map((table) =>
    table.after >= sequence ? table : { ...table, cursor: String(sequence), after: sequence }
  );
}
