/**
 * Reads a request body as JSON, for the sync endpoint: at most `maxBytes`
 * (413 beyond, decided from `Content-Length` when it is sent, before reading
 * anything), UTF-8 only, parsed once. Every way a body can be broken — a
 * connection that fails mid-body, a malformed chunked encoding, bytes that
 * are not UTF-8, text that is not JSON, JSON nested too deep for the parser —
 * is an answer (400 or 413), never an exception for the caller.
 *
 * Hono's `bodyLimit` trusts `Content-Length` the same way but reads a chunked
 * body outside any error handling (a broken one becomes a 500) and hands the
 * bytes on to be read a second time; this reads them once.
 *
 * @module
 */

/**
 * A parsed body, or the error answer to give instead (its status is the one
 * `ERROR_STATUS` gives its code: 400 or 413).
 */
export type BodyResult =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly code: "malformed" | "too_large"; readonly message: string };

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads `request`'s body, at most `maxBytes` of it, and parses it as JSON.
 *
 * @example
 * ```ts
 * const body = await readJsonBody(c.req.raw, 8 * 1024 * 1024);
 * if (!body.ok) return fail(c, body.code, body.message);
 * ```
 */
export async function readJsonBody(request: Request, maxBytes: number): Promise<BodyResult> {
  const tooLarge = {
    ok: false,
    code: "too_large",
    message: `The request body is larger than ${maxBytes} bytes`,
  } as const;
  const malformed = (message: string) => ({ ok: false, code: "malformed", message }) as const;

  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) return tooLarge;
  if (request.body === null) return malformed("The request has no body");

  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        reader.cancel().catch(() => undefined);
        return tooLarge;
      }
      chunks.push(value);
    }
  } catch {
    return malformed("The request body could not be read");
  }

  const bytes = chunks.length === 1 ? chunks[0]! : concat(chunks, size);
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return malformed("The request body is not UTF-8");
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return malformed("The request body is not valid JSON");
  }
}

function concat(chunks: readonly Uint8Array[], size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
