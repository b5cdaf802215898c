/**
 * Generators of hostile requests for the sync endpoint, used by
 * `tests/protocol_fuzz.test.ts`.
 *
 * A generated {@linkcode FuzzRequest} is a recipe — method, path, headers, a
 * body as a JSON tree or raw bytes, and for some a raw HTTP framing — small
 * enough to print when a check fails, and turned into bytes only when sent
 * ({@linkcode bodyBytes}, {@linkcode rawRequestBytes}). Bodies come in every
 * category the wire protocol must survive:
 *
 * - strings in every position (ids, values, table and column names, cursor
 *   values and keys, node ids, schema hashes, versions) from hostile alphabets:
 *   lone surrogates, NUL and other control characters, very long strings,
 *   look-alikes that case-fold to ASCII (`ſ` U+017F, `K` U+212A, also inside
 *   base64), and `__proto__`, `constructor`, `prototype`, `toString`, `valueOf`
 *   as keys;
 * - numbers at the edges (2^53, -0, 1e308, 1e309, 17 significant digits,
 *   NaN-ish strings);
 * - versions that are valid, far in the future, malformed, or name another
 *   client's node;
 * - JSON nested up to 1,200 levels in a json column, and 100,000 levels in the
 *   `protocol` field;
 * - bodies at and just over the size limit, blobs in valid and invalid base64,
 *   duplicate ids in one push, arrays where objects belong;
 * - and valid pushes and pulls among them, so the accepting path is exercised.
 *
 * Requests are dressed with varied content types, authorization headers,
 * routes and methods, and some are sent over a raw socket with chunked or
 * broken framing. `GET /schema` is asked with junk query strings, content
 * types and credentials ({@linkcode schemaRequests}).
 *
 * @module
 */

import fc from "fast-check";
import { formatHlc, MAX_COUNTER } from "../src/hlc.ts";
import { PROTOCOL_VERSION } from "../src/protocol.ts";

/** A JSON literal written exactly as given: `1e309`, `-0`, 100,000 nested brackets. */
export class RawJson {
  /** @param text the literal, written into the body as is */
  constructor(readonly text: string) {}
}

/** An object written with these entries in this order: duplicate keys and `__proto__` included. */
export class JsonEntries {
  /** @param entries key/value pairs, written in order */
  constructor(readonly entries: readonly (readonly [string, Json])[]) {}
}

/** A JSON tree as the fuzzer builds it. */
export type Json =
  | null
  | boolean
  | number
  | string
  | RawJson
  | JsonEntries
  | readonly Json[]
  | { readonly [key: string]: Json };

/** A request body. */
export type Body =
  | { readonly kind: "none" }
  /** `value` as JSON text; `padTo` pads it with trailing spaces to exactly that many bytes. */
  | { readonly kind: "json"; readonly value: Json; readonly padTo?: number }
  /** Text sent as UTF-8. */
  | { readonly kind: "text"; readonly text: string }
  /** Bytes sent as they are (not UTF-8, or not only). */
  | { readonly kind: "bytes"; readonly bytes: readonly number[] };

/** How a raw-socket request frames its body. */
export type Framing =
  | "chunked"
  | "bad-chunk-size"
  | "bad-chunk-mid-body"
  | "short-chunk"
  | "chunk-without-crlf"
  | "chunked-and-length"
  | "length-too-long"
  | "length-too-short"
  | "length-not-a-number"
  | "two-lengths"
  | "nul-in-header"
  | "header-without-colon"
  | "folded-header"
  | "bare-lf"
  | "http-9"
  | "huge-header"
  | "truncated-head";

/** The framings that make a malformed HTTP message (the runtime may refuse them itself). */
export const BROKEN_FRAMINGS: readonly Framing[] = [
  "bad-chunk-size",
  "bad-chunk-mid-body",
  "short-chunk",
  "chunk-without-crlf",
  "chunked-and-length",
  "length-too-long",
  "length-too-short",
  "length-not-a-number",
  "two-lengths",
  "nul-in-header",
  "header-without-colon",
  "folded-header",
  "bare-lf",
  "http-9",
  "huge-header",
  "truncated-head",
];

/** One generated request. */
export interface FuzzRequest {
  /** What the generator meant, e.g. `push/valid`, `pull/borrowed-cursor`, `raw/bad-chunk-size`. */
  readonly kind: string;
  readonly method: string;
  readonly path: string;
  /** `Content-Type`, or none. */
  readonly contentType: string | undefined;
  /** `Authorization`, or none. */
  readonly authorization: string | undefined;
  readonly body: Body;
  /** Built to be accepted: the server must answer 200. */
  readonly valid: boolean;
  /** Sent over a raw socket with this framing (otherwise with `fetch`). */
  readonly framing?: Framing;
  /** Chunk sizes of a `chunked` framing. */
  readonly chunks?: readonly number[];
}

/** A client of the fuzzed server. */
export interface FuzzPrincipal {
  /** Bearer token. */
  readonly token: string;
  /** Principal id: the scope value of its `todos` rows. */
  readonly id: string;
  /** The node id its replica stamps versions with. */
  readonly nodeId: string;
  /** The ids of the `todos` rows it owns after seeding. */
  readonly todos: readonly string[];
}

/** Alice: the usual attacker; she pushes Bob's ids, and Bob's ids with a NUL and more after them. */
export const ALICE: FuzzPrincipal = {
  token: "a",
  id: "alice",
  nodeId: "alice-node",
  todos: ["alice-1", "alice-2", "x.alice"],
};
/** Bob: the usual victim. */
export const BOB: FuzzPrincipal = {
  token: "b",
  id: "bob",
  nodeId: "bob-node",
  todos: ["bob-1", "bob-2", "x", "\u017f", "\u212a"],
};
/** Tokens → principal ids, for `bearer()` and `--tokens`. */
export const TOKENS: Readonly<Record<string, string>> = { a: ALICE.id, b: BOB.id };
/** Rows of the unscoped tables present after seeding. */
export const SEEDED_IDS = {
  tasks: ["t-1", "t-2", "t-3"],
  notes: ["n-1", "n-2"],
  files: ["f-1", "f-2"],
} as const;

/** What the generators need to know about the server. */
export interface FuzzContext {
  /** The schema hash the server expects. */
  readonly schemaHash: string;
  /** Wall clock (ms) when the requests were generated. */
  readonly now: number;
  /** The server's body limit in bytes. */
  readonly maxBodyBytes: number;
  /** Changes per push the server accepts. */
  readonly maxChangesPerPush: number;
  /** Cursors Bob was handed (Alice borrows them). */
  readonly borrowedCursors: readonly string[];
  /** The synced tables the server has (default all of {@linkcode TABLES}). */
  readonly tables?: readonly TableName[];
}

/** The synced tables of `syncSchema` (tests/fixtures.ts). */
export const TABLES = ["tasks", "notes", "files", "todos"] as const;
/** A synced table of `syncSchema`. */
export type TableName = (typeof TABLES)[number];

const tablesOf = (ctx: FuzzContext): readonly TableName[] => ctx.tables ?? TABLES;

// ---------------------------------------------------------------- strings

/** UTF-16 pieces that are well formed but hostile. */
const WELL_FORMED_UNITS: readonly string[] = [
  "a",
  "Z",
  "0",
  "9",
  " ",
  "-",
  "_",
  ".",
  ":",
  "/",
  "\\",
  '"',
  "'",
  "`",
  "%",
  "*",
  "?",
  ";",
  "=",
  "+",
  "\u0000",
  "\u0001",
  "\b",
  "\t",
  "\n",
  "\r",
  "\u001b",
  "\u001f",
  "\u007f",
  "\u0085",
  "\u00a0",
  "\u2028",
  "\u2029",
  "\u202e",
  "\ufeff",
  "\ufffe",
  "\uffff",
  "\u017f", // ſ, upper-cases to S
  "\u212a", // K (Kelvin), lower-cases to k
  "\u0130", // İ
  "\u00df",
  "\u00e9",
  "e\u0301",
  "\u4e2d",
  "\ud83d\ude00", // a surrogate pair
  "\udbff\udfff", // the last code point
  "' OR 1=1 --",
  '");--',
];
/** Halves of surrogate pairs, alone: not well-formed UTF-16. */
const LONE_SURROGATES: readonly string[] = ["\ud800", "\udfff", "\udbff", "\udc00"];
/** Keys that mean something to JavaScript objects. */
export const HOSTILE_KEYS: readonly string[] = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "__defineGetter__",
  "isPrototypeOf",
  "",
];

/** Well-formed hostile strings of up to `maxLength` pieces. */
function wellFormedString(minLength = 0, maxLength = 12): fc.Arbitrary<string> {
  return fc.string({ unit: fc.constantFrom(...WELL_FORMED_UNITS), minLength, maxLength });
}

/** A long string: around the id limit (128 UTF-16 units) or far beyond it. */
const longString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(127, 128, 129, 1_000, 70_000).map((n) => "x".repeat(n)),
  fc.constantFrom(63, 64, 65).map((n) => "\ud83d\ude00".repeat(n)),
  fc.constant("x".repeat(127) + "\ud800"),
);

/** Any string, hostile: lone surrogates included. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: wellFormedString() },
  {
    weight: 3,
    arbitrary: fc.string({
      unit: fc.constantFrom(...WELL_FORMED_UNITS, ...LONE_SURROGATES),
      maxLength: 10,
    }),
  },
  { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_KEYS) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 16 }) },
  { weight: 1, arbitrary: longString },
);

/** A valid row id: well formed, 1..128 UTF-16 units; often one of a small pool, so ids repeat. */
function rowId(table: TableName, who: FuzzPrincipal): fc.Arbitrary<string> {
  const pool: string[] = table === "todos"
    ? [...who.todos, "d-1", "d-2"]
    : [...SEEDED_IDS[table], "d-1", "d-2", "d-3"];
  return fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(...pool) },
    { weight: 4, arbitrary: wellFormedString(1, 16) },
    { weight: 1, arbitrary: fc.constantFrom("x".repeat(128), "\ud83d\ude00".repeat(64)) },
  );
}

/** A well-formed text value, now and then long. */
const textValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 12, arbitrary: wellFormedString(0, 24) },
  { weight: 1, arbitrary: fc.constantFrom(1_000, 20_000).map((n) => "\u0000x".repeat(n / 2)) },
);

// ---------------------------------------------------------------- numbers

/** Number literals at the edges of doubles and safe integers, written as is. */
const NUMBER_LITERALS: readonly string[] = [
  "0",
  "-0",
  "1",
  "-1",
  "1.0",
  "1e0",
  "1E2",
  "0.1",
  "0.30000000000000004",
  "1.0000000000000002",
  "123456789.12345679",
  "9007199254740991",
  "9007199254740992",
  "9007199254740993",
  "-9007199254740991",
  "-9007199254740992",
  "1e308",
  "1.7976931348623157e308",
  "1e309",
  "-1e309",
  "5e-324",
  "2.2250738585072014e-308",
  "1e-400",
  "0.1e1",
  "100000000000000000000000000000",
];
const numberLiteral: fc.Arbitrary<Json> = fc.constantFrom(...NUMBER_LITERALS).map((text) =>
  new RawJson(text)
);
/** Strings that look like numbers to someone. */
const NUMBERISH_STRINGS: readonly string[] = ["NaN", "Infinity", "-Infinity", "-0", "1e308", "0x1"];

/** Numbers of every kind: literals, doubles (17 significant digits), integers. */
export const hostileNumber: fc.Arbitrary<Json> = fc.oneof(
  numberLiteral,
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.constantFrom(...NUMBERISH_STRINGS),
);

// ---------------------------------------------------------------- versions

const nodeIdArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(ALICE.nodeId, BOB.nodeId, "n", "n".repeat(64)),
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/),
);

/** A valid version near `now`, often naming another client's node. */
function versionNear(ctx: FuzzContext, nodeIds: fc.Arbitrary<string> = nodeIdArb) {
  return fc.record({
    offset: fc.integer({ min: -30_000, max: 20_000 }),
    counter: fc.oneof(
      { weight: 8, arbitrary: fc.integer({ min: 0, max: 20 }) },
      { weight: 1, arbitrary: fc.constant(MAX_COUNTER) },
    ),
    nodeId: nodeIds,
  }).map(({ offset, counter, nodeId }) => formatHlc({ ms: ctx.now + offset, counter, nodeId }));
}

/** A well-formed version too far ahead of the server's clock, or beyond safe integers. */
function farFutureVersion(ctx: FuzzContext): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(90_000, 120_000, 300_000, 3_600_000).map((ahead) =>
      formatHlc({ ms: ctx.now + ahead, counter: 0, nodeId: BOB.nodeId })
    ),
    fc.integer({ min: 120_000, max: 1e12 }).map((ahead) =>
      formatHlc({ ms: ctx.now + ahead, counter: 0, nodeId: ALICE.nodeId })
    ),
    fc.constant(formatHlc({ ms: Number.MAX_SAFE_INTEGER, counter: 0, nodeId: BOB.nodeId })),
    fc.constant("9999999999999999999:000000000:x"),
  );
}

/** Strings that are almost versions. */
function malformedVersion(ctx: FuzzContext): fc.Arbitrary<string> {
  const valid = formatHlc({ ms: ctx.now, counter: 1, nodeId: "node" });
  const [ms, counter] = valid.split(":") as [string, string];
  return fc.oneof(
    fc.constantFrom(
      "",
      "yesterday",
      `${ms}:${counter}`,
      `${ms}:${counter}:`,
      `${ms.slice(1)}:${counter}:node`,
      `0${ms}:${counter}:node`,
      `${ms}:0${counter}:node`,
      `${ms}:${counter}:${"n".repeat(65)}`,
      `${ms}:${counter}:no/de`,
      `${ms}:${counter}:no\u0000de`,
      `${ms}:${counter}:node\n`,
      ` ${valid}`,
      `${ms}:${counter}:n\u00f6de`,
      `${ms.replace(/\d/g, "\u0661")}:${counter}:node`,
      `${ms}:${counter}:node:extra`,
      valid.toUpperCase().replace("NODE", "\u212a"),
    ),
    hostileString,
  );
}

// ---------------------------------------------------------------- blobs and json

/** Bytes as base64. */
export function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

const validBase64: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ maxLength: 48 }).map(base64) },
  { weight: 1, arbitrary: fc.constantFrom("", "AB==", "AAB=", "////", "+++/") },
  { weight: 1, arbitrary: fc.constant(base64(new Uint8Array(65_536).map((_, i) => i * 7))) },
);

/** Base64 look-alikes: `ſ` and `K` upper/lower-case to letters of the alphabet. */
const invalidBase64: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom(
    "A",
    "AA",
    "AAA",
    "A===",
    "====",
    "@@@@",
    "AAAA AAAA",
    "AAAA\n",
    "\u017f\u017f\u017f\u017f",
    "\u212a\u212a\u212a\u212a",
    "AAA\u017f",
    "\u212aAAA",
    "AA-_",
    "\ud800AAA",
    "AAAA".repeat(100) + "=",
  ),
  fc.constantFrom(0, true, [] as Json, {} as Json),
);

/** `depth` nested arrays (or objects) around a 0, as literal text. */
export function nested(depth: number, shape: "array" | "object" = "array"): RawJson {
  return shape === "array"
    ? new RawJson("[".repeat(depth) + "0" + "]".repeat(depth))
    : new RawJson('{"a":'.repeat(depth) + "0" + "}".repeat(depth));
}

/** A small JSON value of hostile leaves. */
const jsonLeaf: fc.Arbitrary<Json> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  hostileNumber,
  hostileString,
);

/** Values for a json column: ordinary, edge numbers, hostile keys, and 0..1,200 levels deep. */
const jsonColumnValue: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json> },
  { weight: 2, arbitrary: numberLiteral },
  {
    weight: 2,
    arbitrary: fc.array(fc.tuple(fc.constantFrom(...HOSTILE_KEYS), jsonLeaf), { maxLength: 4 })
      .map((entries) => new JsonEntries(entries)),
  },
  { weight: 1, arbitrary: fc.array(jsonLeaf, { maxLength: 5 }) },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constantFrom(0, 1, 2, 10, 100, 999, 1_000, 1_001, 1_200),
      fc.constantFrom<"array" | "object">("array", "object"),
    ).map(([depth, shape]) => nested(depth, shape)),
  },
);

// ---------------------------------------------------------------- pushes

type Change = { readonly [key: string]: Json };
type ChangeArb = fc.Arbitrary<Change>;

/** A valid change to one table, as `who` would push it. */
function validChange(ctx: FuzzContext, who: FuzzPrincipal, table: TableName): ChangeArb {
  const head = { id: rowId(table, who), version: versionNear(ctx), deleted: fc.boolean() };
  switch (table) {
    case "tasks":
      return fc.record({
        ...head,
        table: fc.constant("tasks"),
        data: fc.record({
          title: textValue,
          done: fc.oneof(
            fc.integer(),
            fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, new RawJson("-0")),
          ),
          notes: fc.option(textValue, { nil: null }),
        }, { requiredKeys: ["title"] }),
      });
    case "notes":
      return fc.record({
        ...head,
        table: fc.constant("notes"),
        data: fc.record({
          body: textValue,
          pinned: fc.boolean(),
          color: fc.option(textValue, { nil: null }),
        }, { requiredKeys: [] }),
      }).chain((change) => withColumnVersions(change));
    case "files":
      return fc.record({
        ...head,
        table: fc.constant("files"),
        data: fc.record({
          name: textValue,
          bytes: fc.option(validBase64, { nil: null }),
          meta: fc.option(jsonColumnValue, { nil: null }),
        }, { requiredKeys: ["name"] }),
      });
    case "todos":
      return fc.record({
        ...head,
        table: fc.constant("todos"),
        data: fc.record({ owner: fc.constant(who.id), title: textValue }),
      });
  }
}

/** Sometimes adds explicit per-column versions, none newer than the change's version. */
function withColumnVersions(change: Change): ChangeArb {
  const columnVersion = olderVersion(change.version as string);
  return fc.option(
    fc.record({ body: columnVersion, pinned: columnVersion, is_deleted: columnVersion }, {
      requiredKeys: [],
    }),
    { nil: undefined },
  ).map((columnVersions) => columnVersions === undefined ? change : { ...change, columnVersions });
}

/** Versions at most `back` ms older than `version`, by the same node (`version` itself included). */
function olderVersion(version: string, back = 5_000): fc.Arbitrary<string> {
  const [ms, , nodeId] = version.split(":") as [string, string, string];
  return fc.oneof(
    fc.constant(version),
    fc.integer({ min: 0, max: back }).map((delta) =>
      formatHlc({ ms: Math.max(0, Number(ms) - delta), counter: 0, nodeId })
    ),
  );
}

/** Sometimes adds the creation version a replica sends along: never newer than the change. */
function withCreatedAt(change: Change): ChangeArb {
  return fc.option(olderVersion(change.version as string, 86_400_000), { nil: undefined }).map((
    createdAt,
  ) => createdAt === undefined ? change : { ...change, createdAt });
}

function anyValidChange(ctx: FuzzContext, who: FuzzPrincipal): ChangeArb {
  return fc.oneof(...tablesOf(ctx).map((table) => validChange(ctx, who, table))).chain(
    withCreatedAt,
  );
}

/** A push body. */
function pushOf(ctx: FuzzContext, nodeId: string, changes: readonly Json[]): Change {
  return { protocol: PROTOCOL_VERSION, nodeId, schema: ctx.schemaHash, changes };
}

/** A valid push, with a spoofed node id now and then, and ids that repeat. */
function validPushBody(ctx: FuzzContext, who: FuzzPrincipal): fc.Arbitrary<Change> {
  return fc.record({
    nodeId: fc.oneof(
      { weight: 6, arbitrary: fc.constant(who.nodeId) },
      { weight: 1, arbitrary: fc.constant(other(who).nodeId) },
      { weight: 1, arbitrary: nodeIdArb },
    ),
    changes: fc.array(anyValidChange(ctx, who), { minLength: 0, maxLength: 6 }),
  }).map(({ nodeId, changes }) => pushOf(ctx, nodeId, changes));
}

/** The other principal. */
export function other(who: FuzzPrincipal): FuzzPrincipal {
  return who === ALICE ? BOB : ALICE;
}

/** Ids of the other principal's rows, and ids that differ from them only after a NUL. */
function othersIds(who: FuzzPrincipal): fc.Arbitrary<string> {
  const theirs = other(who).todos;
  return fc.oneof(
    fc.constantFrom(...theirs),
    fc.constantFrom(...theirs).map((id) => `${id}\u0000`),
    fc.constantFrom(...theirs).map((id) => `${id}\u0000${who.id}`),
    fc.constantFrom(...theirs).map((id) => `${id}\u0000`.repeat(2)),
    fc.constantFrom(...theirs).map((id) => id.toUpperCase()),
  );
}

/** A push by `who` that touches the other principal's rows, or claims their scope. */
function scopeAttackPush(ctx: FuzzContext, who: FuzzPrincipal): fc.Arbitrary<Change> {
  const victim = other(who);
  const change = fc.record({
    table: fc.constant("todos"),
    id: othersIds(who),
    version: fc.oneof(versionNear(ctx, fc.constant(victim.nodeId)), versionNear(ctx)),
    deleted: fc.boolean(),
    data: fc.record({
      owner: fc.constantFrom(who.id, victim.id, `${victim.id}\u0000`, victim.id.toUpperCase()),
      title: textValue,
    }, { requiredKeys: [] }),
  });
  return fc.record({
    nodeId: fc.constantFrom(victim.nodeId, who.nodeId),
    changes: fc.array(fc.oneof(change, validChange(ctx, who, "todos")), {
      minLength: 1,
      maxLength: 5,
    }),
  }).map(({ nodeId, changes }) => pushOf(ctx, nodeId, changes));
}

// ---------------------------------------------------------------- pulls

/** A valid cursor: fresh, borrowed from Bob, or crafted (any 1..15 digits). */
function validCursor(ctx: FuzzContext): fc.Arbitrary<string | null> {
  return fc.oneof(
    fc.constant(null),
    fc.constantFrom("0", "000000000000000", "999999999999999", ...ctx.borrowedCursors),
    fc.integer({ min: 0, max: 2_000 }).map(String),
  );
}

/** A valid pull, now and then with another client's node id. */
function validPullBody(ctx: FuzzContext, who: FuzzPrincipal): fc.Arbitrary<Change> {
  return fc.record({
    tables: fc.subarray([...tablesOf(ctx)]),
    cursors: fc.array(validCursor(ctx), { minLength: 4, maxLength: 4 }),
    limit: fc.option(
      fc.oneof(fc.integer({ min: 1, max: 10 }), fc.constantFrom(1, 1_000, 5_000)),
      { nil: undefined },
    ),
    nodeId: fc.option(fc.constantFrom(who.nodeId, other(who).nodeId, "n"), { nil: undefined }),
    held: fc.option(heldRanges, { nil: undefined }),
    // Any valid wait: the server cuts it to its maxPullWait.
    wait: fc.option(
      fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constantFrom(0, 30_000, 600_000)),
      { nil: undefined },
    ),
  }).map(({ tables, cursors, limit, nodeId, held, wait }) => {
    const body: Record<string, Json> = {
      protocol: PROTOCOL_VERSION,
      schema: ctx.schemaHash,
      cursors: Object.fromEntries(tables.map((table, i) => [table, cursors[i] ?? null])),
    };
    if (limit !== undefined) body.limit = limit;
    if (nodeId !== undefined) body.nodeId = nodeId;
    if (held !== undefined) body.held = held;
    if (wait !== undefined) body.wait = wait;
    return body;
  });
}

/** Valid `held` claims: runs of sequence numbers the asker says it pushed (true or not). */
const heldRanges: fc.Arbitrary<Json> = fc.oneof(
  fc.array(
    fc.tuple(fc.integer({ min: 1, max: 400 }), fc.integer({ min: 0, max: 30 })).map((
      [first, length],
    ) => [first, first + length]),
    { maxLength: 5 },
  ),
  fc.constant(Array.from({ length: 64 }, (_, i) => [2 * i + 1, 2 * i + 1])),
);

/** Cursors no server hands out. */
const hostileCursor: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom(
    "",
    "-1",
    "01x",
    "1e3",
    " 1",
    "1 ",
    "0x10",
    "9999999999999999",
    "1.5",
    "\u0661",
    "1\u0000",
  ),
  hostileString,
  hostileNumber,
  fc.constantFrom(true, [] as Json, {} as Json),
);

// ---------------------------------------------------------------- mutations

const REMOVE = Symbol("remove");
type Replacement = Json | typeof REMOVE;

/** `value` with `key` set (or removed), keeping the order of the other entries. */
function withEntry(value: Json, key: string, replacement: Replacement): Json {
  const entries = value instanceof JsonEntries
    ? [...value.entries]
    : typeof value === "object" && value !== null && !Array.isArray(value) &&
        !(value instanceof RawJson)
    ? Object.entries(value as Record<string, Json>)
    : undefined;
  if (entries === undefined) return value;
  const kept = entries.filter(([k]) => k !== key);
  if (replacement === REMOVE) return new JsonEntries(kept);
  return new JsonEntries([...kept, [key, replacement]]);
}

/** A hostile JSON value for any position. */
const hostileJson: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 3, arbitrary: hostileNumber },
  { weight: 1, arbitrary: fc.constantFrom<Json>(null, true, false, [], {}, [1], [null], [{}]) },
  {
    weight: 1,
    arbitrary: fc.array(fc.tuple(fc.constantFrom(...HOSTILE_KEYS), jsonLeaf), { maxLength: 3 })
      .map((entries) => new JsonEntries(entries)),
  },
  { weight: 1, arbitrary: fc.constantFrom(10, 1_000).map((depth) => nested(depth)) },
);
const replacement: fc.Arbitrary<Replacement> = fc.oneof(
  { weight: 6, arbitrary: hostileJson },
  { weight: 1, arbitrary: fc.constant(REMOVE) },
);

/** Values that fit one position of a push badly. */
function positionValue(ctx: FuzzContext, key: string): fc.Arbitrary<Replacement> {
  switch (key) {
    case "table":
      return fc.oneof(
        fc.constantFrom(
          "settings",
          "_sync_meta",
          "_dirty_rows",
          "TASKS",
          "tasks\u0000",
          "tasks ",
          "sqlite_master",
          '"tasks"',
        ),
        replacement,
      );
    case "version":
    case "createdAt":
      return fc.oneof(farFutureVersion(ctx), malformedVersion(ctx), versionNear(ctx), replacement);
    case "id":
      return fc.oneof(longString, hostileString, replacement);
    case "columnVersions":
      return fc.oneof(
        fc.constantFrom<Json>([], { nope: "x" }, { body: "x" }),
        fc.record({ body: farFutureVersion(ctx) }),
        fc.record({ title: versionNear(ctx) }),
        replacement,
      );
    case "data":
      return fc.oneof(fc.constantFrom<Json>([], "x", null, [{ title: "t" }]), replacement);
    case "protocol":
      return fc.oneof(
        fc.constantFrom<Json>("1", [1], { v: 1 }, new RawJson("1.0"), new RawJson("1e0"), 0, 2),
        replacement,
      );
    case "nodeId":
      return fc.oneof(malformedVersion(ctx), replacement);
    case "schema":
      return fc.oneof(
        fc.constantFrom(
          ctx.schemaHash.toUpperCase(),
          `${ctx.schemaHash}\u0000`,
          ` ${ctx.schemaHash}`,
          "",
        ),
        replacement,
      );
    case "changes":
    case "cursors":
      return fc.oneof(fc.constantFrom<Json>({}, [], "x", null, [[]]), replacement);
    case "held":
      return fc.oneof(
        fc.constantFrom<Json>(
          [[5, 1]],
          [[0, 1]],
          [[-1, 2]],
          [[1.5, 2]],
          [["1", 2]],
          [[1, 2, 3]],
          [[1]],
          [[1, new RawJson("9007199254740993")]],
          [[1, new RawJson("1e400")]],
          {},
          [{}],
          Array.from({ length: 65 }, (_, i) => [i + 1, i + 1]),
        ),
        replacement,
      );
    case "wait":
      return fc.oneof(
        fc.constantFrom<Json>(
          -1,
          1.5,
          600_001,
          1e308,
          "10",
          null,
          true,
          {},
          [10],
          new RawJson("1e400"),
          new RawJson("9007199254740993"),
        ),
        replacement,
      );
    case "limit":
      return fc.oneof(
        fc.constantFrom<Json>(
          0,
          -1,
          1.5,
          5_001,
          1e308,
          "10",
          new RawJson("1e400"),
          new RawJson("-0"),
        ),
        replacement,
      );
    default:
      return replacement;
  }
}

/** A blob or json-column value that does not fit, or a value of the wrong kind. */
function columnValue(column: string): fc.Arbitrary<Replacement> {
  if (column === "bytes") return fc.oneof(invalidBase64, replacement);
  if (column === "meta") return jsonColumnValue;
  return fc.oneof(
    fc.string({ unit: fc.constantFrom(...LONE_SURROGATES, "a", "\u0000"), minLength: 1 }),
    hostileNumber,
    replacement,
  );
}

/** Keys to set: known fields, hostile keys, and unknown ones. */
function keyAt(known: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...known) },
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_KEYS) },
    { weight: 1, arbitrary: fc.constantFrom("wait", "extra", "system_id", "is_deleted") },
  );
}

/** A body with one or two positions made hostile. */
function mutatePush(ctx: FuzzContext, body: Change): fc.Arbitrary<Json> {
  const changes = body.changes as readonly Change[];
  const atTop = keyAt(["protocol", "nodeId", "schema", "changes"]).chain((key) =>
    positionValue(ctx, key).map((value) => withEntry(body, key, value))
  );
  if (changes.length === 0) return atTop;
  const index = fc.nat({ max: changes.length - 1 });
  const replaceChange = (i: number, change: Json) =>
    ({ ...body, changes: changes.map((c, j) => (j === i ? change : c)) }) as Json;
  const atChange = fc.tuple(
    index,
    keyAt(["table", "id", "version", "createdAt", "deleted", "data", "columnVersions"]),
  )
    .chain(([i, key]) =>
      positionValue(ctx, key).map((value) => replaceChange(i, withEntry(changes[i]!, key, value)))
    );
  const atData = fc.tuple(
    index,
    keyAt(["title", "done", "notes", "body", "pinned", "color", "name", "bytes", "meta", "owner"]),
  ).chain(([i, key]) =>
    columnValue(key).map((value) => {
      const change = changes[i]!;
      return replaceChange(i, withEntry(change, "data", withEntry(change.data ?? {}, key, value)));
    })
  );
  const duplicateKey = fc.constantFrom("protocol", "schema", "changes").chain((key) =>
    positionValue(ctx, key).map((value) =>
      new JsonEntries([...Object.entries(body), [key, value === REMOVE ? null : value]])
    )
  );
  return fc.oneof(
    { weight: 3, arbitrary: atTop },
    { weight: 3, arbitrary: atChange },
    { weight: 4, arbitrary: atData },
    { weight: 1, arbitrary: duplicateKey },
    { weight: 1, arbitrary: fc.constantFrom<Json>([body], [], "push", null, 1) },
  );
}

/** A pull with one position made hostile. */
function mutatePull(ctx: FuzzContext, body: Change): fc.Arbitrary<Json> {
  const cursors = body.cursors as Record<string, Json>;
  const badCursor = fc.tuple(fc.constantFrom(...TABLES), hostileCursor).map(([table, cursor]) =>
    withEntry(body, "cursors", withEntry(cursors, table, cursor))
  );
  const badCursorKey = fc.tuple(
    fc.oneof(
      fc.constantFrom(...HOSTILE_KEYS),
      fc.constantFrom("settings", "_sync_meta", "TASKS", "tasks\u0000"),
      hostileString,
    ),
    fc.option(validCursor(ctx), { nil: null }),
  ).map(([key, cursor]) => withEntry(body, "cursors", withEntry(cursors, key, cursor)));
  const atTop = keyAt(["protocol", "schema", "cursors", "limit", "nodeId", "held", "wait"]).chain((
    key,
  ) => positionValue(ctx, key).map((value) => withEntry(body, key, value)));
  return fc.oneof(badCursor, badCursorKey, atTop);
}

// ---------------------------------------------------------------- bodies beyond JSON

/** Text bodies that are not JSON, or not what a pull or push is. */
const garbageText: fc.Arbitrary<string> = fc.constantFrom(
  "",
  " ",
  "{",
  "[1,2",
  "NaN",
  "Infinity",
  "true",
  '"push"',
  "{'protocol': 1}",
  '{"protocol":1,}',
  '{"protocol":1} trailing',
  '{"protocol":1 /* comment */}',
  "\u001e{}",
  "nul\u0000",
  '{"protocol":\u00001}',
);

/** Bodies that are not UTF-8: stray bytes, overlong and surrogate encodings, UTF-16. */
function garbageBytes(ctx: FuzzContext): fc.Arbitrary<number[]> {
  const push = new TextEncoder().encode(JSON.stringify(pushOf(ctx, "n", [])));
  return fc.oneof(
    fc.constantFrom<number[]>(
      [0xff, 0xfe, 0xfd],
      [0xc0, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xef, 0xbb, 0xbf, ...push], // a BOM before a valid push
      [0xfe, 0xff, ...[...JSON.stringify({ protocol: 1 })].flatMap((ch) => [0, ch.charCodeAt(0)])],
    ),
    fc.uint8Array({ maxLength: 64 }).map((bytes) => [...bytes]),
    // A valid push whose node id has a stray byte inside.
    fc.nat({ max: 200 }).map((at) => {
      const bytes = [...push];
      const i = bytes.indexOf(0x6e, Math.min(at, bytes.length - 1)); // an "n"
      if (i >= 0) bytes[i] = 0xff;
      return bytes;
    }),
  );
}

// ---------------------------------------------------------------- requests

/** What a generator produced before it is dressed with headers and a route. */
interface Base {
  readonly kind: string;
  readonly route: "/push" | "/pull";
  readonly body: Body;
  readonly valid: boolean;
  readonly framing?: Framing;
  readonly chunks?: readonly number[];
}

const json = (value: Json, padTo?: number): Body =>
  padTo === undefined ? { kind: "json", value } : { kind: "json", value, padTo };

/** Bodies at, just under and just over the size limit (few: they are 8 MiB each). */
function bigBase(ctx: FuzzContext, who: FuzzPrincipal): fc.Arbitrary<Base> {
  const limit = ctx.maxBodyBytes;
  const push = (id: string) =>
    pushOf(ctx, who.nodeId, [{
      table: "tasks",
      id,
      version: formatHlc({ ms: ctx.now, counter: 7, nodeId: who.nodeId }),
      deleted: false,
      data: { title: "padded" },
    }]);
  return fc.oneof(
    fc.constantFrom(limit - 1, limit).map((padTo): Base => ({
      kind: "big/padded-to-limit",
      route: "/push",
      body: json(push(`big-${padTo}`), padTo),
      valid: true,
    })),
    fc.constant<Base>({
      kind: "big/over-limit",
      route: "/push",
      body: json(push("big-over"), limit + 1),
      valid: false,
    }),
    // One string of nearly the whole limit, in a change the schema refuses.
    fc.constant<Base>({
      kind: "big/huge-value",
      route: "/push",
      body: json(pushOf(ctx, who.nodeId, [{ table: "nope", title: "x".repeat(limit - 200) }])),
      valid: false,
    }),
  );
}

/** Bodies nested far deeper than any client writes. */
function deepBase(ctx: FuzzContext): fc.Arbitrary<Base> {
  return fc.oneof(
    fc.constantFrom("array", "object").map((shape): Base => ({
      kind: `deep/protocol-${shape}`,
      route: "/push",
      body: json(withEntry(pushOf(ctx, "n", []), "protocol", nested(100_000, shape as "array"))),
      valid: false,
    })),
    fc.constantFrom("changes", "cursors").map((key): Base => ({
      kind: `deep/${key}`,
      route: key === "changes" ? "/push" : "/pull",
      body: json({
        protocol: PROTOCOL_VERSION,
        schema: ctx.schemaHash,
        nodeId: "n",
        [key]: nested(100_000),
      }),
      valid: false,
    })),
  );
}

function pushBase(kind: string, valid: boolean) {
  return (body: Json): Base => ({ kind, route: "/push", body: json(body), valid });
}
function pullBase(kind: string, valid: boolean) {
  return (body: Json): Base => ({ kind, route: "/pull", body: json(body), valid });
}

/** A changes list of exactly `n` changes to fresh rows. */
function manyChanges(ctx: FuzzContext, who: FuzzPrincipal, n: number): Json[] {
  return Array.from({ length: n }, (_, i) => ({
    table: "tasks",
    id: `many-${n}-${i}`,
    version: formatHlc({ ms: ctx.now - 5_000, counter: i, nodeId: who.nodeId }),
    deleted: false,
    data: { title: `row ${i}` },
  }));
}

/** Raw-socket requests: a valid push in chunks, or framed in a broken way. */
function rawBase(ctx: FuzzContext, who: FuzzPrincipal): fc.Arbitrary<Base> {
  return fc.oneof(
    fc.tuple(
      validPushBody(ctx, who),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 4 }),
    )
      .map(([body, chunks]): Base => ({
        kind: "raw/chunked",
        route: "/push",
        body: json(body),
        valid: true,
        framing: "chunked",
        chunks,
      })),
    fc.tuple(validPushBody(ctx, who), fc.constantFrom(...BROKEN_FRAMINGS)).map((
      [body, framing],
    ): Base => ({
      kind: `raw/${framing}`,
      route: "/push",
      body: json(body),
      valid: false,
      framing,
    })),
  );
}

/** One undressed request of any category. */
function baseArb(ctx: FuzzContext, who: FuzzPrincipal): fc.Arbitrary<Base> {
  return fc.oneof(
    { weight: 24, arbitrary: validPushBody(ctx, who).map(pushBase("push/valid", true)) },
    {
      weight: 26,
      arbitrary: validPushBody(ctx, who).chain((body) => mutatePush(ctx, body)).map(
        pushBase("push/mutated", false),
      ),
    },
    { weight: 12, arbitrary: validPullBody(ctx, who).map(pullBase("pull/valid", true)) },
    {
      weight: 12,
      arbitrary: validPullBody(ctx, who).chain((body) => mutatePull(ctx, body)).map(
        pullBase("pull/mutated", false),
      ),
    },
    { weight: 8, arbitrary: scopeAttackPush(ctx, who).map(pushBase("push/scope-attack", true)) },
    {
      weight: 4,
      arbitrary: fc.tuple(fc.constantFrom<"/push" | "/pull">("/push", "/pull"), garbageText).map((
        [route, text],
      ): Base => ({ kind: "garbage/text", route, body: { kind: "text", text }, valid: false })),
    },
    {
      weight: 3,
      arbitrary: fc.tuple(fc.constantFrom<"/push" | "/pull">("/push", "/pull"), garbageBytes(ctx))
        .map(([route, bytes]): Base => ({
          kind: "garbage/bytes",
          route,
          body: { kind: "bytes", bytes },
          valid: false,
        })),
    },
    { weight: 3, arbitrary: deepBase(ctx) },
    { weight: 5, arbitrary: rawBase(ctx, who) },
    { weight: 1, arbitrary: bigBase(ctx, who) },
  );
}

const CONTENT_TYPES: readonly (string | undefined)[] = [
  "application/json-seq",
  "text/plain",
  undefined,
  "APPLICATION/JSON",
  "application/json;",
  "application/jsonx",
  "application/x-json",
  "application/json; charset=latin1",
  "multipart/form-data; boundary=x",
  "application/x-www-form-urlencoded",
];
const HOSTILE_AUTHORIZATIONS: readonly (string | undefined)[] = [
  undefined,
  "",
  "Bearer",
  "Bearer ",
  "Basic x",
  "Basic YTo=",
  "Bearer a, Bearer b",
  "Bearer a Bearer b",
  "Bearer a,b",
  "Bearer  a",
  "bearer a",
  "BEARER a",
  "Bearer wrong",
  "Bearer __proto__",
  "Bearer constructor",
  "Bearer toString",
  "a",
];
const OTHER_ROUTES: readonly (readonly [string, string])[] = [
  ["GET", "/push"],
  ["GET", "/pull"],
  ["POST", "/health"],
  ["PUT", "/push"],
  ["DELETE", "/pull"],
  ["PATCH", "/push"],
  ["OPTIONS", "/push"],
  ["POST", "/"],
  ["POST", "/nope"],
  ["POST", "/push/"],
  ["POST", "/pull/x"],
  ["POST", "/PUSH"],
  ["POST", "/sync/push"],
  ["POST", "/push.json"],
  ["GET", "/health/"],
  ["GET", "/"],
  ["GET", "/__proto__"],
];

/** Gives a request its headers and route: mostly the intended ones, sometimes not. */
function dress(base: Base, who: FuzzPrincipal): fc.Arbitrary<FuzzRequest> {
  const intended: FuzzRequest = {
    ...base,
    method: "POST",
    path: base.route,
    contentType: "application/json",
    authorization: `Bearer ${who.token}`,
  };
  return fc.oneof(
    { weight: 14, arbitrary: fc.constant(intended) },
    {
      weight: 2,
      arbitrary: fc.constant<FuzzRequest>({
        ...intended,
        contentType: "application/json; charset=utf-8",
      }),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(...CONTENT_TYPES).map((contentType): FuzzRequest => ({
        ...intended,
        contentType,
        valid: false,
      })),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(...HOSTILE_AUTHORIZATIONS).map((authorization): FuzzRequest => ({
        ...intended,
        authorization,
        valid: base.valid && authorization === "a" && who === ALICE,
      })),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(...OTHER_ROUTES).map(([method, path]): FuzzRequest => ({
        ...intended,
        method,
        path,
        body: method === "GET" ? { kind: "none" } : base.body,
        valid: false,
        framing: base.framing === "chunked" ? "chunked" : undefined,
      })),
    },
    {
      weight: 1,
      arbitrary: fc.constant<FuzzRequest>({
        ...intended,
        path: base.route === "/push" ? "/pull" : "/push",
        valid: false,
      }),
    },
  );
}

/** `GET /health`: now and then among the other requests, and after every one of them. */
export const healthRequest: FuzzRequest = {
  kind: "health",
  method: "GET",
  path: "/health",
  contentType: undefined,
  authorization: undefined,
  body: { kind: "none" },
  valid: true,
};

/** Query strings `GET /schema` ignores: empty, malformed escapes, prototype keys, long ones. */
const SCHEMA_QUERIES: readonly string[] = [
  "",
  "?",
  "?x=1",
  "?%ZZ",
  "?a=%00%ff&a=%C0%AF",
  "?__proto__[a]=1&constructor=1&prototype=1",
  "?schema=0&protocol=2&tables=",
  `?q=${"a".repeat(4_000)}`,
  "?q=%F0%9F%98%80%ED%A0%80",
  "?&&==&",
];
const SCHEMA_AUTHORIZATIONS: readonly (string | undefined)[] = [
  `Bearer ${ALICE.token}`,
  `Bearer ${BOB.token}`,
  undefined,
  "Bearer wrong",
  "Bearer __proto__",
  "Basic YTo=",
  "Bearer a, Bearer b",
];
const SCHEMA_CONTENT_TYPES: readonly (string | undefined)[] = [
  undefined,
  "application/json",
  "text/plain",
  "multipart/form-data; boundary=x",
];

/**
 * `GET /schema` with every junk query, each with another authorization and
 * content type (the route reads neither query nor body: the credentials
 * alone decide between 200 and 401), and the methods and paths next to it
 * that are no route (404).
 */
export function schemaRequests(): FuzzRequest[] {
  const gets = SCHEMA_QUERIES.flatMap((query, i) =>
    [0, 1, 2].map((j): FuzzRequest => {
      const authorization = SCHEMA_AUTHORIZATIONS[(i + j * 3) % SCHEMA_AUTHORIZATIONS.length];
      return {
        kind: "schema",
        method: "GET",
        path: `/schema${query}`,
        contentType: SCHEMA_CONTENT_TYPES[(i + j) % SCHEMA_CONTENT_TYPES.length],
        authorization,
        body: { kind: "none" },
        valid: authorization === `Bearer ${ALICE.token}` || authorization === `Bearer ${BOB.token}`,
      };
    })
  );
  const others = ([
    ["POST", "/schema"],
    ["PUT", "/schema"],
    ["DELETE", "/schema"],
    ["GET", "/schema/"],
    ["GET", "/SCHEMA"],
    ["GET", "/schema.json"],
    ["GET", "/schema/x"],
  ] as const).map(([method, path]): FuzzRequest => ({
    kind: "schema/other-route",
    method,
    path,
    contentType: "application/json",
    authorization: `Bearer ${ALICE.token}`,
    body: method === "GET" ? { kind: "none" } : { kind: "json", value: {} },
    valid: false,
  }));
  return [...gets, ...others];
}

/** Requests of every category, from Alice and from Bob. */
export function requestArb(ctx: FuzzContext): fc.Arbitrary<FuzzRequest> {
  return fc.oneof(
    {
      weight: 60,
      arbitrary: fc.constantFrom(ALICE, BOB).chain((who) =>
        baseArb(ctx, who).chain((base) => dress(base, who))
      ),
    },
    { weight: 1, arbitrary: fc.constant(healthRequest) },
  );
}

/** Valid pushes that give Alice and Bob their rows before fuzzing starts. */
export function seedRequests(ctx: FuzzContext): FuzzRequest[] {
  const version = (who: FuzzPrincipal, i: number) =>
    formatHlc({ ms: ctx.now - 10_000, counter: i, nodeId: who.nodeId });
  const todos = (who: FuzzPrincipal) =>
    who.todos.map((id, i) => ({
      table: "todos",
      id,
      version: version(who, i),
      deleted: false,
      data: { owner: who.id, title: `${who.id}'s ${i}` },
    }));
  const shared = [
    ...SEEDED_IDS.tasks.map((id, i) => ({
      table: "tasks",
      id,
      version: version(BOB, 10 + i),
      deleted: false,
      data: { title: `task ${i}`, done: i, notes: i === 0 ? null : "n\u0000" },
    })),
    ...SEEDED_IDS.notes.map((id, i) => ({
      table: "notes",
      id,
      version: version(BOB, 20 + i),
      deleted: false,
      data: { body: `note ${i}`, pinned: i === 0, color: "red" },
    })),
    ...SEEDED_IDS.files.map((id, i) => ({
      table: "files",
      id,
      version: version(BOB, 30 + i),
      deleted: false,
      data: {
        name: `file ${i}`,
        bytes: base64(new Uint8Array([0, 1, 2, 250, 255, i])),
        meta: { size: 0.1 + 0.2, big: 2 ** 53 - 1, tags: ["\u0000"] },
      },
    })),
  ];
  const push = (who: FuzzPrincipal, changes: Json[]): FuzzRequest => ({
    kind: "seed",
    method: "POST",
    path: "/push",
    contentType: "application/json",
    authorization: `Bearer ${who.token}`,
    body: json(pushOf(ctx, who.nodeId, changes)),
    valid: true,
  });
  const served = (changes: { table: string }[]) =>
    changes.filter((change) => tablesOf(ctx).includes(change.table as TableName));
  return [push(BOB, served([...todos(BOB), ...shared])), push(ALICE, served(todos(ALICE)))];
}

/**
 * Requests of the rare categories, sent after the generated ones in every run
 * so that even a short run covers them: the size limit, the change limit, the
 * deepest bodies, look-alike base64, ill-formed strings in stored columns, and
 * the framings that only a raw socket can send.
 */
export function edgeRequests(ctx: FuzzContext): FuzzRequest[] {
  const who = ALICE;
  const dressed = (base: Base): FuzzRequest => ({
    ...base,
    method: "POST",
    path: base.route,
    contentType: "application/json",
    authorization: `Bearer ${who.token}`,
  });
  const version = formatHlc({ ms: ctx.now - 1_000, counter: 3, nodeId: who.nodeId });
  const push = (kind: string, changes: Json[], valid = true) =>
    dressed({ kind, route: "/push", body: json(pushOf(ctx, who.nodeId, changes)), valid });
  const file = (id: string, data: Json) => ({ table: "files", id, version, deleted: false, data });
  const task = (id: string, title: string) => ({
    table: "tasks",
    id,
    version,
    deleted: false,
    data: { title },
  });
  const limit = ctx.maxBodyBytes;
  const padded = (kind: string, padTo: number, valid: boolean) =>
    dressed({
      kind,
      route: "/push",
      body: json(pushOf(ctx, who.nodeId, [task(`pad-${padTo}`, "padded")]), padTo),
      valid,
    });
  const requests: FuzzRequest[] = [
    padded("edge/padded-to-limit", limit, true),
    padded("edge/over-limit", limit + 1, false),
    push("edge/max-changes", manyChanges(ctx, who, ctx.maxChangesPerPush)),
    push("edge/too-many-changes", manyChanges(ctx, who, ctx.maxChangesPerPush + 1), false),
    dressed({
      kind: "edge/deep-protocol",
      route: "/push",
      body: json(withEntry(pushOf(ctx, "n", []), "protocol", nested(100_000))),
      valid: false,
    }),
    push("edge/json-1000-deep", [file("deep-1000", { name: "d", meta: nested(1_000) })]),
    push("edge/lookalike-base64", [
      file("b64-s", { name: "s", bytes: "\u017f\u017f\u017f\u017f" }),
    ]),
    push("edge/lookalike-base64", [
      file("b64-k", { name: "k", bytes: "\u212a\u212a\u212a\u212a" }),
    ]),
    push("edge/json-1001-deep", [file("deep-1001", { name: "d", meta: nested(1_001) })]),
    push("edge/json-1200-deep", [file("deep-1200", { name: "d", meta: nested(1_200, "object") })]),
    dressed({
      kind: "edge/raw-chunked-over-limit",
      route: "/push",
      body: json(pushOf(ctx, who.nodeId, [task("chunked-over", "x")]), limit + 4_096),
      valid: false,
      framing: "chunked",
      chunks: [1 << 20],
    }),
    ...(["bad-chunk-mid-body", "length-too-long", "chunked-and-length"] as const).map((framing) =>
      dressed({
        kind: `edge/raw-${framing}`,
        route: "/push",
        body: json(pushOf(ctx, who.nodeId, [task(`raw-${framing}`, "x")])),
        valid: false,
        framing,
      })
    ),
    push("edge/far-future", [{
      ...task("future", "from the future"),
      version: formatHlc({ ms: ctx.now + 5 * 60_000, counter: 0, nodeId: who.nodeId }),
    }]),
    ...[1, 2].map((n) =>
      push("edge/column-versions-without-is_deleted", [{
        table: "notes",
        id: "cv-twice",
        version: formatHlc({ ms: ctx.now - 2_000 + n, counter: 0, nodeId: who.nodeId }),
        deleted: false,
        data: { body: `take ${n}` },
        columnVersions: {
          body: formatHlc({ ms: ctx.now - 2_000 + n, counter: 0, nodeId: who.nodeId }),
        },
      }])
    ),
    // One push, one new row twice: the first change's tombstone version is the newest there is.
    push("edge/same-row-twice", [
      {
        table: "notes",
        id: "twice",
        version: formatHlc({ ms: ctx.now - 3_000, counter: 0, nodeId: who.nodeId }),
        deleted: true,
        data: { body: "x", pinned: false, color: null },
        columnVersions: {
          body: formatHlc({ ms: ctx.now - 3_001, counter: 0, nodeId: who.nodeId }),
          is_deleted: formatHlc({ ms: ctx.now - 3_000, counter: 0, nodeId: who.nodeId }),
        },
      },
      {
        table: "notes",
        id: "twice",
        version: formatHlc({ ms: ctx.now - 2_990, counter: 0, nodeId: who.nodeId }),
        deleted: false,
        data: { body: "x", pinned: false, color: null },
        columnVersions: Object.fromEntries(
          ["body", "pinned", "color"].map((column) => [
            column,
            formatHlc({ ms: ctx.now - 2_990, counter: 0, nodeId: who.nodeId }),
          ]),
        ),
      },
    ]),
    push("edge/lone-surrogate-title", [task("lone-title", "\ud800")]),
    push("edge/lone-surrogate-id", [task("lone-\udfff", "t")]),
  ];
  return requests;
}

// ---------------------------------------------------------------- materializing

/** A JSON tree as text; strings are escaped, so the text is ASCII-safe UTF-16 free of lone halves. */
export function jsonText(value: Json): string {
  if (value instanceof RawJson) return value.text;
  if (value instanceof JsonEntries) {
    return `{${value.entries.map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(",")}}`;
  }
  if (Array.isArray(value)) return `[${value.map(jsonText).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    return jsonText(new JsonEntries(Object.entries(value as Record<string, Json>)));
  }
  return JSON.stringify(value) ?? "null";
}

/** The bytes of a body. */
export function bodyBytes(body: Body): Uint8Array<ArrayBuffer> {
  switch (body.kind) {
    case "none":
      return new Uint8Array(0);
    case "text":
      return new TextEncoder().encode(body.text);
    case "bytes":
      return Uint8Array.from(body.bytes);
    case "json": {
      const bytes = new TextEncoder().encode(jsonText(body.value));
      if (body.padTo === undefined || body.padTo <= bytes.length) return bytes;
      const padded = new Uint8Array(body.padTo).fill(0x20);
      padded.set(bytes);
      return padded;
    }
  }
}

const ascii = (text: string) => new TextEncoder().encode(text);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** `body` as chunks of the given sizes (repeated), ending with the last chunk. */
function chunked(body: Uint8Array, sizes: readonly number[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let at = 0, i = 0; at < body.length; i++) {
    const size = Math.min(sizes[i % sizes.length]!, body.length - at);
    parts.push(ascii(`${size.toString(16)}\r\n`), body.subarray(at, at + size), ascii("\r\n"));
    at += size;
  }
  parts.push(ascii("0\r\n\r\n"));
  return concat(...parts);
}

/**
 * The bytes of a raw-socket request, and whether to half-close the socket
 * after writing them (a broken message would otherwise leave the server
 * waiting for the rest, as it should).
 */
export function rawRequestBytes(
  request: FuzzRequest,
  host: string,
): { bytes: Uint8Array; end: boolean } {
  const body = bodyBytes(request.body);
  const framing = request.framing ?? "chunked";
  const eol = framing === "bare-lf" ? "\n" : "\r\n";
  const version = framing === "http-9" ? "HTTP/9.9" : "HTTP/1.1";
  const lines = [
    `${request.method} ${request.path} ${version}`,
    `Host: ${host}`,
    "Connection: close",
  ];
  if (request.contentType !== undefined) lines.push(`Content-Type: ${request.contentType}`);
  if (request.authorization !== undefined) lines.push(`Authorization: ${request.authorization}`);
  const head = (extra: string[], last = eol) => ascii([...lines, ...extra].join(eol) + eol + last);
  const withLength = (extra: string[] = [], length = body.length) =>
    concat(head([`Content-Length: ${length}`, ...extra]), body);
  const te = ["Transfer-Encoding: chunked"];
  const half = body.subarray(0, Math.floor(body.length / 2));
  const rest = body.subarray(half.length);
  switch (framing) {
    case "chunked":
      return { bytes: concat(head(te), chunked(body, request.chunks ?? [64])), end: false };
    case "bad-chunk-size":
      return { bytes: concat(head(te), ascii("zz\r\n"), body, ascii("\r\n0\r\n\r\n")), end: true };
    case "bad-chunk-mid-body":
      return {
        bytes: concat(
          head(te),
          ascii(`${half.length.toString(16)}\r\n`),
          half,
          ascii("\r\nqq\r\n"),
          rest,
          ascii("\r\n0\r\n\r\n"),
        ),
        end: true,
      };
    case "short-chunk":
      return {
        bytes: concat(
          head(te),
          ascii(`${(body.length + 100).toString(16)}\r\n`),
          body,
          ascii("\r\n0\r\n\r\n"),
        ),
        end: true,
      };
    case "chunk-without-crlf":
      return {
        bytes: concat(
          head(te),
          ascii(`${half.length.toString(16)}\r\n`),
          half,
          ascii("XX0\r\n\r\n"),
        ),
        end: true,
      };
    case "chunked-and-length":
      return {
        bytes: concat(head([...te, `Content-Length: ${body.length}`]), chunked(body, [16])),
        end: true,
      };
    case "length-too-long":
      return { bytes: withLength([], body.length + 100), end: true };
    case "length-too-short":
      return { bytes: withLength([], Math.max(1, body.length - 10)), end: true };
    case "length-not-a-number":
      return { bytes: concat(head(["Content-Length: 1e3"]), body), end: true };
    case "two-lengths":
      return {
        bytes: concat(
          head([`Content-Length: ${body.length}`, `Content-Length: ${body.length - 1}`]),
          body,
        ),
        end: true,
      };
    case "nul-in-header":
      return { bytes: withLength(["X-Fuzz: a\u0000b"]), end: true };
    case "header-without-colon":
      return { bytes: withLength(["No colon here"]), end: true };
    case "folded-header":
      return { bytes: withLength([`X-Fuzz: a${eol} b`]), end: true };
    case "bare-lf":
      return { bytes: withLength(), end: true };
    case "http-9":
      return { bytes: withLength(), end: true };
    case "huge-header":
      return { bytes: withLength([`X-Fuzz: ${"h".repeat(80_000)}`]), end: true };
    case "truncated-head":
      return { bytes: ascii([...lines, `Content-Length: ${body.length}`].join(eol)), end: true };
  }
}

/** Text with control characters and lone surrogates escaped, so that it prints as it is. */
export function printable(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const next = text.charCodeAt(i + 1);
    if (code >= 0xd800 && code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      out += text[i]! + text[i + 1]!;
      i++;
    } else if (code < 0x20 || code === 0x7f || (code >= 0xd800 && code <= 0xdfff)) {
      out += `\\u${code.toString(16).padStart(4, "0")}`;
    } else out += text[i];
  }
  return out;
}

/** A short, printable description of a request (bodies cut to `max` characters). */
export function describeRequest(request: FuzzRequest, max = 600): string {
  const body = request.body;
  let text: string;
  if (body.kind === "json") {
    text = jsonText(body.value);
    if (body.padTo !== undefined) text += ` (padded with spaces to ${body.padTo} bytes)`;
  } else if (body.kind === "text") text = JSON.stringify(body.text);
  else if (body.kind === "bytes") text = `bytes [${body.bytes.slice(0, 80).join(",")}]`;
  else text = "(no body)";
  if (text.length > max) text = `${text.slice(0, max)}… (${text.length} characters)`;
  const header = (name: string, value: string | undefined) =>
    value === undefined ? `no ${name}` : `${name} ${JSON.stringify(value)}`;
  const framing = request.framing === undefined ? "" : ` framing ${request.framing}`;
  return printable(
    `[${request.kind}] ${request.method} ${request.path}${framing}; ` +
      `${header("content-type", request.contentType)}, ` +
      `${header("authorization", request.authorization)}; body ${text}`,
  );
}
