/**
 * The re-runs of one database's watches go in rounds: the watches that have
 * a change to show run one after another in a round, and the next round
 * starts no sooner than `throttle` ms after the last one ended (the least
 * `throttle` of the watches waiting for it). After a quiet moment a round
 * starts at once, so a lone change is shown without delay.
 *
 * Why rounds, not a timer per watch: a hundred watches on a busy table,
 * each throttled on its own, drift apart and keep the database busy with
 * one re-run or another at every moment, and a writer waits behind them
 * after every write. In rounds they run together and then leave the
 * database to the writer for `throttle` ms: the re-runs take a bounded
 * share of its time, whatever the number of watches.
 *
 * @example
 * ```ts
 * const rounds = watchRounds(db);
 * const member = { throttle: 30, run: () => rerun() };
 * db.onChange(() => rounds.request(member));
 * ```
 *
 * @module
 */

/** One watch, as its database's rounds see it. */
export interface RoundMember {
  /** The least time (ms) from the end of the last round to the round that runs it. */
  readonly throttle: number;
  /** Runs the watch's query and calls its listener (its failures are its own). */
  run(): Promise<void>;
}

/** The rounds of one database: {@linkcode watchRounds}. */
export interface WatchRounds {
  /** `member` has a change to show: it runs in the next round. */
  request(member: RoundMember): void;
  /** `member` stopped watching: it leaves the next round. */
  remove(member: RoundMember): void;
}

const roundsOf = new WeakMap<object, WatchRounds>();

/**
 * The rounds of `db`'s watches (created on first use).
 *
 * @example
 * ```ts
 * watchRounds(db).request(member);
 * ```
 */
export function watchRounds(db: object): WatchRounds {
  let rounds = roundsOf.get(db);
  if (rounds === undefined) roundsOf.set(db, rounds = createRounds());
  return rounds;
}

function createRounds(): WatchRounds {
  const due = new Set<RoundMember>();
  let running = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let lastEnd = -Infinity;

  const schedule = (): void => {
    if (running || due.size === 0) return;
    let gap = Infinity;
    for (const member of due) gap = Math.min(gap, member.throttle);
    const wait = lastEnd + gap - performance.now();
    clearTimeout(timer);
    timer = undefined;
    if (wait <= 0) {
      void round();
      return;
    }
    timer = setTimeout(() => {
      timer = undefined;
      void round();
    }, wait);
  };

  const round = async (): Promise<void> => {
    running = true;
    const members = [...due];
    due.clear();
    try {
      for (const member of members) await member.run();
    } finally {
      running = false;
      lastEnd = performance.now();
    }
    schedule();
  };

  return {
    request(member) {
      due.add(member);
      schedule();
    },
    remove(member) {
      due.delete(member);
    },
  };
}
