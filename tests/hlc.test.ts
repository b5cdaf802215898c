import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { compareHlc, createHlc, formatHlc, isHlc, MAX_COUNTER, parseHlc } from "../src/hlc.ts";
import { SyncError } from "../src/errors.ts";
import { manualClock } from "./helpers.ts";

const T0 = 1_767_225_600_000;

test("hlc encodes as <ms 19 digits>:<counter 9 digits>:<nodeId>", () => {
  const clock = createHlc({ nodeId: "node-a", now: () => T0 });
  assert.equal(clock.now(), "0000001767225600000:000000000:node-a");
  assert.equal(clock.now(), "0000001767225600000:000000001:node-a");
});

test("hlc now() is strictly increasing while the wall clock stands still or jumps back", () => {
  const wall = manualClock(T0);
  const clock = createHlc({ nodeId: "a", now: wall.now });
  let previous = clock.now();
  for (const step of [0, 0, -5_000, 3, -1, 10_000, -10_000, 0]) {
    wall.advance(step);
    const next = clock.now();
    assert.ok(next > previous, `${next} > ${previous}`);
    previous = next;
  }
});

test("hlc now() follows the wall clock when it moves forward", () => {
  const wall = manualClock(T0);
  const clock = createHlc({ nodeId: "a", now: wall.now });
  clock.now();
  wall.advance(25);
  assert.deepEqual(parseHlc(clock.now()), { ms: T0 + 25, counter: 0, nodeId: "a" });
});

test("hlc receive(x) is greater than x and than every earlier local version", () => {
  const wall = manualClock(T0);
  const clock = createHlc({ nodeId: "a", now: wall.now });
  const local = clock.now();
  const remote = formatHlc({ ms: T0 + 1_000, counter: 7, nodeId: "b" });
  const received = clock.receive(remote);
  assert.ok(received > remote);
  assert.ok(received > local);
  assert.deepEqual(parseHlc(received), { ms: T0 + 1_000, counter: 8, nodeId: "a" });
  assert.ok(clock.now() > received);
});

test("hlc receive follows the causality rule for every interleaving (property)", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({
            kind: fc.constant("tick" as const),
            wall: fc.integer({ min: -2_000, max: 2_000 }),
          }),
          fc.record({
            kind: fc.constant("receive" as const),
            lead: fc.integer({ min: -50_000, max: 60_000 }),
            counter: fc.integer({ min: 0, max: MAX_COUNTER }),
          }),
        ),
        { maxLength: 60 },
      ),
      (events) => {
        const wall = manualClock(T0);
        const clock = createHlc({ nodeId: "a", now: wall.now });
        let last = clock.now();
        for (const event of events) {
          let next: string;
          if (event.kind === "tick") {
            wall.advance(event.wall);
            next = clock.now();
          } else {
            const remote = formatHlc({
              ms: wall.now() + event.lead,
              counter: event.counter,
              nodeId: "b",
            });
            next = clock.receive(remote);
            assert.ok(next > remote, "receive(x) > x");
          }
          assert.ok(next > last, "never goes backwards");
          last = next;
        }
      },
    ),
  );
});

test("hlc string order equals clock order (property)", () => {
  const parts = fc.record({
    ms: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    counter: fc.integer({ min: 0, max: MAX_COUNTER }),
    nodeId: fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/),
  });
  fc.assert(
    fc.property(parts, parts, (a, b) => {
      const byClock = a.ms - b.ms || a.counter - b.counter ||
        (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0);
      assert.equal(Math.sign(compareHlc(formatHlc(a), formatHlc(b))), Math.sign(byClock));
      assert.deepEqual(parseHlc(formatHlc(a)), { ...a });
    }),
  );
});

test("hlc refuses a remote version beyond maxDrift and stays untouched", () => {
  const clock = createHlc({ nodeId: "a", now: () => T0, maxDrift: 60_000 });
  const before = clock.now();
  const ahead = formatHlc({ ms: T0 + 60_001, counter: 0, nodeId: "b" });
  assert.throws(() => clock.receive(ahead), (error: unknown) => {
    assert.ok(error instanceof SyncError);
    assert.equal(error.code, "clock_drift");
    assert.match(error.message, /60001 ms ahead/);
    return true;
  });
  assert.equal(clock.last, before);
  // exactly maxDrift ahead is still accepted
  const edge = formatHlc({ ms: T0 + 60_000, counter: 0, nodeId: "b" });
  assert.ok(clock.receive(edge) > edge);
});

test("hlc counter overflow advances the logical millisecond instead of throwing", () => {
  const last = formatHlc({ ms: T0, counter: MAX_COUNTER, nodeId: "a" });
  const clock = createHlc({ nodeId: "a", now: () => T0, last });
  assert.deepEqual(parseHlc(clock.now()), { ms: T0 + 1, counter: 0, nodeId: "a" });
  const remote = formatHlc({ ms: T0 + 1, counter: MAX_COUNTER, nodeId: "b" });
  assert.deepEqual(parseHlc(clock.receive(remote)), { ms: T0 + 2, counter: 0, nodeId: "a" });
});

test("hlc continues after a restart from the last persisted version", () => {
  const first = createHlc({ nodeId: "a", now: () => T0 + 5_000 });
  const persisted = first.now();
  const restarted = createHlc({ nodeId: "a", now: () => T0, last: persisted });
  assert.ok(restarted.now() > persisted);
});

test("parseHlc names malformed input with invalid_version", () => {
  for (
    const bad of [
      "",
      "123",
      "0000001767225600000:00000000:a",
      "0000001767225600000:000000000:",
      "0000001767225600000:000000000:a b",
      42,
      null,
    ]
  ) {
    assert.throws(
      () => parseHlc(bad),
      (error: unknown) => error instanceof SyncError && error.code === "invalid_version",
    );
    assert.equal(isHlc(bad), false);
  }
  assert.throws(() => createHlc({ nodeId: "a", last: "nope" }), SyncError);
});

test("createHlc refuses a node id that would break the encoding", () => {
  assert.throws(() => createHlc({ nodeId: "a:b" }), TypeError);
  assert.throws(() => createHlc({ nodeId: "" }), TypeError);
});
