// Convergence under faults, model-based: 3–5 clients and a server over real
// HTTP and libSQL files, with requests lost, duplicated, held back and
// reordered, the server and clients restarted, clocks skewed, and client files
// restored from old copies. Every replica must end equal to the server, the
// server equal to a last-write-wins oracle, the outboxes empty and
// `_sync_rejected` holding exactly the scope violations (tests/faults.ts).
//
// CI runs a fixed seed, and replays the schedules of known hazards. Longer:
// FUZZ_RUNS=200 FUZZ_STEPS=60 FUZZ_SEED=<n>, or `npm run soak -- --minutes 10`
// (scripts/soak.ts); FUZZ_SCHEDULE='<json>' replays one printed schedule.
import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { checkConvergence, REGRESSIONS, replaySchedule, type Schedule } from "./faults.ts";

const env = (name: string) => process.env[name];
const replay = env("FUZZ_SCHEDULE");

test("replicas converge to the server and to a last-write-wins oracle under network, server, clock and file faults", async () => {
  if (replay !== undefined) {
    const result = await replaySchedule(JSON.parse(replay) as Schedule);
    if (result.failed) assert.fail(result.report);
    return;
  }
  const maxSteps = Number(env("FUZZ_STEPS") ?? 30);
  const result = await checkConvergence({
    seed: Number(env("FUZZ_SEED") ?? 20_260_101),
    numRuns: Number(env("FUZZ_RUNS") ?? 15),
    minSteps: Math.min(10, maxSteps),
    maxSteps,
    path: env("FUZZ_PATH"),
    // Keeps a failing CI run near its budget; the report still names seed and schedule.
    shrinkBudgetMs: Number(env("FUZZ_SHRINK_MS") ?? 20_000),
  });
  if (result.failed) assert.fail(result.report);
});

for (const [name, schedule] of Object.entries(REGRESSIONS)) {
  test(`under faults: ${name}`, async () => {
    if (replay !== undefined) return;
    const result = await replaySchedule(schedule);
    if (result.failed) assert.fail(result.report);
  });
}
