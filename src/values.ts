/**
 * What a string, a row id or a JSON value may be before it reaches SQL: the
 * rules shared by the local write API, the merge and the sync server, so a
 * value refused in one place is refused in all of them.
 *
 * - Strings are well-formed UTF-16 (no lone surrogate). SQLite stores text as
 *   UTF-8; a lone surrogate has no UTF-8 form, is stored as invalid bytes, and
 *   reading it back aborts the libSQL client — on the server, every later pull
 *   of that table.
 * - Row ids are 1–128 characters, well-formed, without control characters
 *   (U+0000–U+001F, U+007F–U+009F): an id holding a NUL reads back cut short
 *   through some drivers, so two different ids would look the same.
 * - JSON values are at most {@linkcode MAX_JSON_DEPTH} deep (SQLite's JSON
 *   functions refuse more than 1,000 levels, which would fail every pull of the
 *   table) and at most {@linkcode MAX_JSON_LENGTH} characters once encoded.
 *
 * Every check is a loop over the value, never a regular expression over an
 * unbounded string, and JSON is walked without recursion, so no input can
 * overflow the stack.
 *
 * @module
 */

/** Longest row id, in UTF-16 code units. */
export const MAX_ROW_ID_LENGTH = 128;
/** Deepest nesting of arrays and objects in a `json` column value. */
export const MAX_JSON_DEPTH = 100;
/** Longest `json` column value, in characters of its JSON text. */
export const MAX_JSON_LENGTH = 4 * 1024 * 1024;

const nativeWellFormed = (String.prototype as { isWellFormed?: () => boolean }).isWellFormed;

/** True when `text` holds no lone surrogate (it has a UTF-8 form). */
export function isWellFormed(text: string): boolean {
  if (nativeWellFormed !== undefined) return nativeWellFormed.call(text);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0xd800 || code > 0xdfff) continue;
    if (code > 0xdbff) return false;
    const next = text.charCodeAt(i + 1);
    if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
    i++;
  }
  return true;
}

/** True when `value` is a row id: 1–128 characters, well-formed, no control characters. */
export function isRowId(value: unknown): value is string {
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_ROW_ID_LENGTH) {
    return false;
  }
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return false;
  }
  return isWellFormed(value);
}

/** The rule {@linkcode isRowId} checks, for error messages. */
export const ROW_ID_RULE =
  "1-128 characters, well-formed UTF-16, without control characters (U+0000-U+001F, U+007F-U+009F)";

/**
 * Why `value` cannot be stored in a `json` column, or `undefined` when it can:
 * every string (keys too) well-formed, nesting at most {@linkcode MAX_JSON_DEPTH}
 * deep, only JSON types (plain objects, arrays, strings, finite numbers,
 * booleans, null). Walks the value without recursion.
 */
export function jsonValueProblem(value: unknown): string | undefined {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  while (stack.length > 0) {
    const { value: item, depth } = stack.pop()!;
    // undefined is left out of objects and written as null in arrays, as JSON.stringify does
    if (item === null || item === undefined || typeof item === "boolean") continue;
    if (typeof item === "number") {
      if (!Number.isFinite(item)) return `${item} is not a JSON number`;
      continue;
    }
    if (typeof item === "string") {
      if (!isWellFormed(item)) return "a string holds a lone surrogate";
      continue;
    }
    if (typeof item !== "object") return `a ${typeof item} is not a JSON value`;
    if (depth >= MAX_JSON_DEPTH) return `it is nested deeper than ${MAX_JSON_DEPTH} levels`;
    if (Array.isArray(item)) {
      for (const element of item) stack.push({ value: element, depth: depth + 1 });
      continue;
    }
    const prototype = Object.getPrototypeOf(item);
    if (prototype !== Object.prototype && prototype !== null) {
      return "only plain objects and arrays are JSON values";
    }
    for (const key of Object.keys(item)) {
      if (!isWellFormed(key)) return "a key holds a lone surrogate";
      stack.push({ value: (item as Record<string, unknown>)[key], depth: depth + 1 });
    }
  }
  return undefined;
}

/**
 * A short description of any value for an error message: bounded strings,
 * numbers and booleans as they are, other values by type. Never serializes
 * a structure, which could be arbitrarily deep.
 */
export function describeValue(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  }
  if (typeof value === "number" || typeof value === "boolean" || value === null) {
    return String(value);
  }
  return Array.isArray(value) ? "an array" : `a value of type ${typeof value}`;
}
