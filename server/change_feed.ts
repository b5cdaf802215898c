/**
 * What one endpoint instance knows of the database's change sequence
 * (`sequence.ts`): the last number given out, and how recently that was
 * confirmed. Pulls use it twice.
 *
 * - **Nothing new, without reading.** A pull whose cursors have all reached
 *   the known sequence has nothing new, and is answered without a database
 *   round trip — while the knowledge is fresh: confirmed by a read that
 *   started at most `interval` ms ago. The instance's own commits are known
 *   at once; another instance's, from the next read (a pull's snapshot or a
 *   poll), so a pull answered from knowledge may miss, for at most
 *   `interval`, a change another instance committed — as a replica that lags
 *   would: late, never skipped.
 * - **Held pulls.** A pull with nothing new may wait for the sequence to
 *   pass its cursors ({@linkcode ChangeFeed.waitPast}): a commit on this
 *   instance wakes it at once; while any pull waits, the database is polled
 *   every `interval` ms for the commits of other instances (one read for all
 *   waiters).
 *
 * A commit of this instance wakes only the pulls it concerns: those asking
 * for a table it wrote, and for a scoped table only the principals whose
 * rows it wrote — so a thousand principals holding pulls cost one read per
 * commit, not a thousand. A commit seen by a poll (another instance's)
 * wakes every held pull. A woken pull only knows that something was
 * committed, not whether it may see it: it reads its page again, and waits
 * on if the page is empty (another principal's rows, a stale push). So a
 * held pull is answered either with rows it may pull or when its wait
 * elapses: other principals' changes decide neither its content nor its
 * timing.
 *
 * With `shared: false`, as on Cloudflare Workers, a request's wait neither
 * wakes nor is woken by another request (work one request leaves to another
 * is cancelled there when the first ends): each held pull polls the database
 * on its own timer.
 *
 * @example
 * ```ts
 * const feed = createChangeFeed({ read: readSequence, interval: 200 });
 * feed.committed(42); // a push on this instance gave out numbers up to 42
 * if ((feed.fresh() ?? -1) <= after) return nothingNew;
 * const moved = await feed.waitPast(after, Date.now() + 20_000, request.signal);
 * ```
 *
 * @module
 */

/** Options of {@linkcode createChangeFeed}. */
export interface ChangeFeedOptions {
  /** Reads the last sequence number given out from the database. */
  readonly read: () => Promise<number>;
  /**
   * How long (ms) a read of the sequence counts as current, and how often
   * the database is polled while pulls wait.
   */
  readonly interval: number;
  /**
   * Whether the waits of all requests share one poll and are woken by this
   * instance's commits (default true). `false`: each wait polls alone.
   */
  readonly shared?: boolean;
  /** The clock (ms). Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * What a commit on this instance wrote: per table, the scope values of its
 * rows (`undefined`: the table has no scope, or they are not known).
 */
export type Touched = ReadonlyMap<string, ReadonlySet<string> | undefined>;

/** An instance's knowledge of the change sequence: {@linkcode createChangeFeed}. */
export interface ChangeFeed {
  /**
   * The last sequence number given out, if confirmed by a read that started
   * at most `interval` ms ago (plus this instance's commits since); else
   * `undefined`: ask the database.
   */
  fresh(): number | undefined;
  /** The database's sequence was `sequence` when a read that started at `startedAt` ran. */
  observe(sequence: number, startedAt: number): void;
  /**
   * A read of the sequence started at `startedAt` is under way (a pull's
   * page read): it is observed when it resolves, and
   * {@linkcode ChangeFeed.pending} returns it meanwhile.
   */
  track(sequence: Promise<number>, startedAt: number): void;
  /**
   * The read of the sequence under way, if any: a pull that finds the
   * knowledge stale waits for it rather than reading pages of its own, so a
   * crowd of pulls arriving at once costs one read, not one each.
   */
  pending(): Promise<void> | undefined;
  /**
   * This instance committed changes numbered up to `sequence`, which wrote
   * `touched`: wakes the waits it passes that it concerns (all of them
   * without `touched`).
   */
  committed(sequence: number, touched?: Touched): void;
  /**
   * Resolves `true` once the known sequence passes `after`, `false` when
   * `until` (ms, on the feed's clock) comes, `signal` aborts or
   * {@linkcode ChangeFeed.end} is called. A failing poll ends the wait early
   * with `false`; the caller reads the database itself next. A commit of
   * this instance wakes it only if `concerns` says the commit's `touched`
   * tables and scopes concern it; what a poll learns wakes every wait.
   */
  waitPast(
    after: number,
    until: number,
    signal?: AbortSignal,
    concerns?: (touched: Touched) => boolean,
  ): Promise<boolean>;
  /** How many waits are pending. */
  readonly waiting: number;
  /** Ends every wait now (each resolves `false`), and those to come at once: for a shutdown. */
  end(): void;
}

interface Waiter {
  readonly after: number;
  readonly concerns?: (touched: Touched) => boolean;
  readonly resolve: (moved: boolean) => void;
}

/**
 * Creates an instance's knowledge of the change sequence.
 *
 * @example
 * ```ts
 * const feed = createChangeFeed({ read: readSequence, interval: 200 });
 * ```
 */
export function createChangeFeed(options: ChangeFeedOptions): ChangeFeed {
  const { read, interval } = options;
  const now = options.now ?? Date.now;
  const shared = options.shared ?? true;
  let known = -1;
  let confirmedAt = -Infinity;
  let ended = false;
  let reading: Promise<void> | undefined;
  const waits = createSharedWaits({ interval, now, poll: () => refresh() });

  const learn = (sequence: number, touched?: Touched) => {
    if (!(sequence > known)) return;
    known = sequence;
    waits.wake(known, touched);
  };
  // One read at a time, for every waiter; a failure ends the waits (their
  // pulls then read the database, and meet the failure themselves).
  const observeRead = (sequence: Promise<number>, startedAt: number): Promise<void> => {
    const done = sequence.then(
      (value) => feed.observe(value, startedAt),
      () => waits.endAll(),
    ).finally(() => {
      if (reading === done) reading = undefined;
    });
    reading = done;
    return done;
  };
  const refresh = (): Promise<void> => reading ?? observeRead(read(), now());

  const feed: ChangeFeed = {
    fresh: () => (now() - confirmedAt <= interval ? known : undefined),
    observe(sequence, startedAt) {
      if (startedAt > confirmedAt) confirmedAt = startedAt;
      learn(sequence);
    },
    committed: learn,
    track(sequence, startedAt) {
      if (reading === undefined) void observeRead(sequence, startedAt);
      else {
        // Observed all the same, when it resolves; the read under way stays the one waited for.
        sequence.then((value) => feed.observe(value, startedAt), () => undefined);
      }
    },
    pending: () => reading,
    get waiting() {
      return waits.size;
    },
    waitPast(after, until, signal, concerns) {
      if (ended || signal?.aborted || known > after) return Promise.resolve(known > after);
      return shared
        ? waits.add({ after, until, signal, concerns })
        : waitAlone({ read, interval, now, feed, ended: () => ended }, { after, until, signal });
    },
    end() {
      ended = true;
      waits.endAll();
    },
  };
  return feed;
}

/** A wait for the sequence to pass `after`, until `until` or `signal`. */
interface WaitRequest {
  readonly after: number;
  readonly until: number;
  readonly signal?: AbortSignal;
  readonly concerns?: (touched: Touched) => boolean;
}

/** The waits that share one poll and are woken by what the instance learns. */
interface SharedWaits {
  /** Resolves `true` when woken past `after`, `false` at `until`, on abort or at the end. */
  add(request: WaitRequest): Promise<boolean>;
  /** The sequence is now `known`, by a commit that wrote `touched` (or a read: undefined). */
  wake(known: number, touched?: Touched): void;
  /** Ends every wait with `false`. */
  endAll(): void;
  readonly size: number;
}

// The shared waits, and the poll that runs every `interval` while any is pending.
function createSharedWaits(
  { interval, now, poll }: {
    interval: number;
    now: () => number;
    poll: () => Promise<void>;
  },
): SharedWaits {
  const waiters = new Set<Waiter>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const schedulePoll = () => {
    if (timer !== undefined || waiters.size === 0) return;
    timer = setTimeout(() => {
      timer = undefined;
      void poll().then(schedulePoll);
    }, interval);
  };
  const stopPoll = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  return {
    get size() {
      return waiters.size;
    },
    add({ after, until, signal, concerns }) {
      return new Promise<boolean>((resolve) => {
        const deadline = setTimeout(() => waiter.resolve(false), Math.max(0, until - now()));
        const abort = () => waiter.resolve(false);
        const waiter: Waiter = {
          after,
          concerns,
          resolve: (moved) => {
            if (!waiters.delete(waiter)) return;
            clearTimeout(deadline);
            signal?.removeEventListener("abort", abort);
            if (waiters.size === 0) stopPoll();
            resolve(moved);
          },
        };
        waiters.add(waiter);
        signal?.addEventListener("abort", abort, { once: true });
        schedulePoll();
      });
    },
    wake(known, touched) {
      for (const waiter of waiters) {
        if (known <= waiter.after) continue;
        if (touched === undefined || waiter.concerns === undefined || waiter.concerns(touched)) {
          waiter.resolve(true);
        }
      }
    },
    endAll() {
      for (const waiter of waiters) waiter.resolve(false);
      stopPoll();
    },
  };
}

// A wait of its own: read the sequence every `interval` until it passes
// `after`, or the wait ends.
async function waitAlone(
  source: {
    read: () => Promise<number>;
    interval: number;
    now: () => number;
    feed: ChangeFeed;
    ended: () => boolean;
  },
  { after, until, signal }: WaitRequest,
): Promise<boolean> {
  const { read, interval, now, feed, ended } = source;
  while (!ended() && !signal?.aborted) {
    const left = until - now();
    if (left <= 0) return false;
    await sleep(Math.min(interval, left), signal);
    if (ended() || signal?.aborted || now() >= until) return false;
    const startedAt = now();
    let sequence: number;
    try {
      sequence = await read();
    } catch {
      return false;
    }
    feed.observe(sequence, startedAt);
    if (sequence > after) return true;
  }
  return false;
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
