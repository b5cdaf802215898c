/**
 * Row values on the wire. JSON carries every column kind as is except blobs,
 * which travel as base64 strings; the column kinds of the schema say which
 * values to convert, so nothing else is guessed.
 *
 * @module
 */

import type { TableInfo } from "./table_info.ts";

/** Encodes bytes as base64. */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

/** Decodes base64 to bytes. */
export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** A row's data as it goes on the wire: blobs become base64. */
export function dataToWire(
  info: TableInfo,
  data: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  if (!info.columns.some((c) => c.kind === "blob")) return data as Record<string, unknown>;
  const out: Record<string, unknown> = { ...data };
  for (const column of info.columns) {
    const value = out[column.name];
    if (column.kind === "blob" && value instanceof Uint8Array) out[column.name] = toBase64(value);
  }
  return out;
}

/** A row's data as it comes off the wire: base64 blobs become bytes. */
export function dataFromWire(
  info: TableInfo,
  data: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  if (!info.columns.some((c) => c.kind === "blob")) return data as Record<string, unknown>;
  const out: Record<string, unknown> = { ...data };
  for (const column of info.columns) {
    const value = out[column.name];
    if (column.kind === "blob" && typeof value === "string") out[column.name] = fromBase64(value);
  }
  return out;
}
