// A reader for hand-written Devicetree Source (DTS v1), producing the same DeviceTree as the dtb reader.
//
// Supported: /dts-v1/, /memreserve/, nodes and properties, cells (with /bits/ 8|16|32|64), strings,
// bytestrings, mixed values, C integer literals and parenthesised integer expressions, character
// literals, labels, &label and &{/path} references (phandle cells and path strings), node references
// (`&label { ... };`), merging of repeated nodes, /delete-node/, /delete-property/, /omit-if-no-ref/
// (accepted, not applied), and /include/ "file" through an injectable reader. Comments: // and /* */.
// Not supported: the C preprocessor (#include, #define): run cpp + dtc and give us the dtb instead.
//
// parseDts() throws only DtsError, which names the file, byte offset, line and column.
//
// Input from outside is bounded: nodes nest at most MAX_NODE_DEPTH levels (Linux's FDT_MAX_DEPTH),
// expressions at most MAX_EXPR_DEPTH parentheses or ?: levels, /include/s at most
// MAX_INCLUDE_DEPTH deep, MAX_INCLUDES in all and MAX_INCLUDE_BYTES of included text, and an
// include loop is named. Unary operators are applied iteratively, so nothing recurses unbounded.

/** Parentheses / ?: levels of one expression. */
export const MAX_EXPR_DEPTH = 256;
/** /include/ nesting. */
export const MAX_INCLUDE_DEPTH = 32;
/** /include/ directives processed in one parse (a real board has tens). */
export const MAX_INCLUDES = 1024;
/** Text read through /include/ in one parse. */
export const MAX_INCLUDE_BYTES = 8 << 20;

import {
  DeviceTree,
  DtNode,
  encodeCells,
  MAX_NODE_DEPTH,
  type MemReserve,
  NODE_TOO_DEEP,
  type SrcPos,
} from './tree.ts';

export class DtsError extends Error {
  override readonly name = 'DtsError';
  constructor(
    readonly file: string,
    /** Byte (UTF-16 code unit) offset in `file`. */
    readonly offset: number,
    readonly line: number,
    readonly column: number,
    readonly detail: string,
  ) {
    super(`${file}:${line}:${column} (offset ${offset}): ${detail}`);
  }
}

export interface DtsOptions {
  /** Name used in error messages and as the base for relative /include/ paths. */
  fileName?: string;
  /** Returns the text of an /include/d file (path already resolved against the including file), or undefined. */
  readInclude?: (path: string) => string | undefined;
}

type Chunk =
  | Uint8Array
  | { kind: 'phandle'; ref: string; file: string; at: number }
  | { kind: 'path'; ref: string; file: string; at: number };

interface Ctx {
  root: DtNode;
  labels: Map<string, DtNode>;
  memReserve: MemReserve[];
  /** Unresolved property values. */
  pending: Map<DtNode, Map<string, Chunk[]>>;
  readInclude?: ((path: string) => string | undefined) | undefined;
  /** The files being parsed, outermost first (the main file, then each open /include/). */
  includeStack: string[];
  includes: number;
  includeBytes: number;
  sawVersion: boolean;
  /** Source text per file, for error positions found after parsing. */
  sources: Map<string, string>;
  /** The parser of each file, to map offsets to original positions (cpp line markers). */
  parsers: Map<string, { srcPos(at: number): SrcPos }>;
}

const MASK64 = (1n << 64n) - 1n;
const utf8Enc = new TextEncoder();

/** Parses DTS source. Throws DtsError. */
export function parseDts(src: string, opts: DtsOptions = {}): DeviceTree {
  const ctx: Ctx = {
    root: new DtNode(''),
    labels: new Map(),
    memReserve: [],
    pending: new Map(),
    readInclude: opts.readInclude,
    includeStack: [opts.fileName ?? '<dts>'],
    includes: 0,
    includeBytes: 0,
    sawVersion: false,
    sources: new Map(),
    parsers: new Map(),
  };
  new Parser(src, opts.fileName ?? '<dts>', ctx, true).parseFile();
  const tree = new DeviceTree(ctx.root, ctx.memReserve);
  resolveReferences(tree, ctx);
  return tree;
}

/**
 * Parses DTS source whose /include/ files come from an asynchronous reader (e.g. the file system).
 * Each round parses with the files read so far (a file not read yet reads as empty) and then
 * reads every file that round asked for, so there are about as many rounds as /include/ levels,
 * not one per file (more only where a file read as empty stops the parse early, e.g. at a
 * reference to a label it defines).
 */
export async function parseDtsAsync(
  src: string,
  opts: { fileName?: string; readFile: (path: string) => Promise<string | undefined> },
): Promise<DeviceTree> {
  const fileName = opts.fileName ?? '<dts>';
  const cache = new Map<string, string | undefined>();
  // every round reads at least one new file
  while (cache.size <= MAX_INCLUDES) {
    const missing = new Set<string>();
    const readInclude = (p: string): string | undefined => {
      if (cache.has(p)) return cache.get(p);
      missing.add(p);
      return '';
    };
    try {
      const tree = parseDts(src, { fileName, readInclude });
      if (missing.size === 0) return tree;
    } catch (e) {
      // an error may come from a file read as empty: read what was missing and parse again
      if (!(e instanceof DtsError) || missing.size === 0) throw e;
    }
    for (const p of missing) {
      let text: string | undefined;
      try {
        text = await opts.readFile(p);
      } catch {
        text = undefined;
      }
      cache.set(p, text);
    }
  }
  throw new DtsError(fileName, 0, 1, 1, `more than ${MAX_INCLUDES} /include/ files`);
}

function dtsError(src: string, file: string, at: number, detail: string): DtsError {
  let line = 1;
  let col = 1;
  for (let i = 0; i < at && i < src.length; i++) {
    if (src[i] === '\n') {
      line++;
      col = 1;
    } else col++;
  }
  return new DtsError(file, at, line, col, detail);
}

function joinPath(fromFile: string, rel: string): string {
  if (rel.startsWith('/')) return rel;
  const slash = fromFile.lastIndexOf('/');
  return slash < 0 ? rel : `${fromFile.slice(0, slash + 1)}${rel}`;
}

const WORD = /[A-Za-z0-9,._+*#?@-]/;
const LABEL = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A cpp line marker: `# 12 "file.dtsi" 1` (or `#line 12 "file.dtsi"`) at the start of a line. */
const LINE_MARKER = /^#(?:line)?[ \t]+(\d+)(?:[ \t]+"((?:[^"\\\n]|\\[^\n])*)")?[^\n]*/;

class Parser {
  private pos = 0;
  /** Offsets where each line starts (built on first need). */
  private lineStarts: number[] | null = null;
  /** cpp line markers seen so far: the raw line after `rawLine` is `line` of `file`. */
  private readonly markers: Array<{ rawLine: number; file: string; line: number }> = [];
  constructor(
    private readonly src: string,
    private readonly file: string,
    private readonly ctx: Ctx,
    private readonly isMain: boolean,
  ) {
    ctx.sources.set(file, src);
    ctx.parsers.set(file, this);
  }

  /** Raw line (1-based) and column of an offset in this source. */
  private rawPos(at: number): { line: number; column: number } {
    if (this.lineStarts === null) {
      const ls = [0];
      for (let i = 0; i < this.src.length; i++) if (this.src.charCodeAt(i) === 10) ls.push(i + 1);
      this.lineStarts = ls;
    }
    const ls = this.lineStarts;
    let lo = 0;
    let hi = ls.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ls[mid]! <= at) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: at - ls[lo]! + 1 };
  }

  /** Where an offset is in the original files (cpp line markers applied). */
  srcPos(at: number): SrcPos {
    const raw = this.rawPos(at);
    for (let i = this.markers.length - 1; i >= 0; i--) {
      const m = this.markers[i]!;
      if (m.rawLine < raw.line)
        return { file: m.file, line: m.line + (raw.line - m.rawLine - 1), column: raw.column };
    }
    return { file: this.file, line: raw.line, column: raw.column };
  }

  private error(detail: string, at = this.pos): DtsError {
    if (this.markers.length === 0) return dtsError(this.src, this.file, at, detail);
    const p = this.srcPos(at);
    return new DtsError(p.file, at, p.line, p.column, detail);
  }

  private lineMarker(): boolean {
    const s = this.src;
    if (this.pos > 0 && s[this.pos - 1] !== '\n') return false;
    const m = LINE_MARKER.exec(s.slice(this.pos, this.pos + 4096));
    if (m === null) return false;
    const rawLine = this.rawPos(this.pos).line;
    const prev = this.markers[this.markers.length - 1];
    const file = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (prev?.file ?? this.file);
    this.markers.push({ rawLine, file, line: Number(m[1]) });
    this.pos += m[0].length;
    return true;
  }

  private skipWs(): void {
    const s = this.src;
    for (;;) {
      const c = s[this.pos];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') this.pos++;
      else if (c === '#' && this.lineMarker()) continue;
      else if (c === '/' && s[this.pos + 1] === '/') {
        while (this.pos < s.length && s[this.pos] !== '\n') this.pos++;
      } else if (c === '/' && s[this.pos + 1] === '*') {
        const e = s.indexOf('*/', this.pos + 2);
        if (e < 0) throw this.error('unterminated /* comment');
        this.pos = e + 2;
      } else return;
    }
  }

  private peek(): string | undefined {
    this.skipWs();
    return this.src[this.pos];
  }

  private expect(ch: string): void {
    if (this.peek() !== ch) {
      const got = this.pos < this.src.length ? `"${this.src[this.pos]}"` : 'end of input';
      throw this.error(`expected "${ch}", found ${got}`);
    }
    this.pos++;
  }

  /** A directive like /dts-v1/ at the current position, without consuming it. */
  private directive(): string | null {
    this.skipWs();
    const m = /^\/([a-z][a-z0-9-]*)\//.exec(this.src.slice(this.pos, this.pos + 40));
    return m ? m[1]! : null;
  }

  private word(): string {
    this.skipWs();
    const start = this.pos;
    while (this.pos < this.src.length && WORD.test(this.src[this.pos]!)) this.pos++;
    if (this.pos === start) {
      const got = this.pos < this.src.length ? `"${this.src[this.pos]}"` : 'end of input';
      throw this.error(`expected a name, found ${got}`);
    }
    return this.src.slice(start, this.pos);
  }

  /** Labels ("name:") at the current position. */
  private labels(): string[] {
    const out: string[] = [];
    for (;;) {
      this.skipWs();
      const m = /^([A-Za-z_][A-Za-z0-9_]*):(?!:)/.exec(this.src.slice(this.pos, this.pos + 256));
      if (!m) return out;
      out.push(m[1]!);
      this.pos += m[0].length;
    }
  }

  private reference(): { ref: string; at: number } {
    const at = this.pos;
    this.expect('&');
    if (this.src[this.pos] === '{') {
      const e = this.src.indexOf('}', this.pos);
      if (e < 0) throw this.error('unterminated &{path} reference', at);
      const path = this.src.slice(this.pos + 1, e);
      this.pos = e + 1;
      return { ref: path, at };
    }
    const start = this.pos;
    while (this.pos < this.src.length && /[A-Za-z0-9_]/.test(this.src[this.pos]!)) this.pos++;
    if (start === this.pos) throw this.error('expected a label after "&"', at);
    return { ref: this.src.slice(start, this.pos), at };
  }

  private lookupNode(ref: string, at: number): DtNode {
    const n = resolveRef(this.ctx, ref);
    if (!n) throw this.error(`label or path "${ref}" not found`, at);
    return n;
  }

  parseFile(): void {
    for (;;) {
      const c = this.peek();
      if (c === undefined) break;
      const d = this.directive();
      if (d === 'dts-v1') {
        this.pos += 8;
        this.expect(';');
        this.ctx.sawVersion = true;
        continue;
      }
      if (d === 'plugin') throw this.error('/plugin/ (overlays) is not supported');
      if (d === 'include') {
        this.include();
        continue;
      }
      if (d === 'memreserve') {
        this.pos += '/memreserve/'.length;
        this.labels();
        const address = this.integer();
        const size = this.integer();
        this.expect(';');
        this.ctx.memReserve.push({ address, size });
        continue;
      }
      if (d === 'delete-node') {
        this.pos += '/delete-node/'.length;
        this.skipWs();
        const r = this.src[this.pos] === '&' ? this.reference() : { ref: this.word(), at: this.pos };
        const n = this.lookupNode(r.ref, r.at);
        if (!n.parent) throw this.error('cannot delete the root node', r.at);
        this.deleteNode(n);
        this.expect(';');
        continue;
      }
      if (d === 'omit-if-no-ref') {
        this.pos += '/omit-if-no-ref/'.length;
        continue;
      }
      if (c === '#') {
        throw this.error('C preprocessor directive: run cpp (and dtc) first, or use /include/ "file"');
      }
      this.requireVersion();
      const labels = this.labels();
      const c2 = this.peek();
      let node: DtNode;
      if (c2 === '/') {
        this.pos++;
        node = this.ctx.root;
      } else if (c2 === '&') {
        const r = this.reference();
        node = this.lookupNode(r.ref, r.at);
      } else {
        throw this.error(`expected "/ {", "&label {" or a directive, found "${c2}"`);
      }
      this.addLabels(node, labels);
      this.expect('{');
      this.body(node);
      this.expect(';');
    }
  }

  private requireVersion(): void {
    if (this.isMain && !this.ctx.sawVersion) {
      throw this.error('missing /dts-v1/; (only version-1 DTS syntax is supported)');
    }
  }

  private include(): void {
    const at = this.pos;
    this.pos += '/include/'.length;
    this.skipWs();
    if (this.src[this.pos] !== '"') throw this.error('expected a "file name" after /include/');
    const name = new TextDecoder().decode(this.stringLiteral());
    const path = joinPath(this.file, name);
    const ctx = this.ctx;
    if (!ctx.readInclude) throw this.error(`/include/ "${name}": no include reader available`, at);
    if (ctx.includeStack.includes(path)) {
      throw this.error(`/include/ "${name}": include loop: ${[...ctx.includeStack, path].join(' -> ')}`, at);
    }
    if (ctx.includeStack.length > MAX_INCLUDE_DEPTH)
      throw this.error(`/include/ "${name}": includes nested more than ${MAX_INCLUDE_DEPTH} deep`, at);
    if (++ctx.includes > MAX_INCLUDES) {
      throw this.error(
        `/include/ "${name}": more than ${MAX_INCLUDES} /include/s in all (files that include the same files again and again?)`,
        at,
      );
    }
    const text = ctx.readInclude(path);
    if (text === undefined) throw this.error(`/include/ "${name}": file not found (${path})`, at);
    ctx.includeBytes += text.length;
    if (ctx.includeBytes > MAX_INCLUDE_BYTES) {
      throw this.error(
        `/include/ "${name}": the included files add up to more than ${MAX_INCLUDE_BYTES} bytes`,
        at,
      );
    }
    ctx.includeStack.push(path);
    // An included file continues the statement context it appears in; we support it at top level
    // (a .dtsi of whole statements) and inside a node body (a list of node items).
    const sub = new Parser(text, path, ctx, false);
    if (this.bodyTarget) sub.bodyItems(this.bodyTarget, true);
    else sub.parseFile();
    ctx.includeStack.pop();
  }

  private bodyTarget: DtNode | null = null;

  private addLabels(node: DtNode, labels: string[]): void {
    for (const l of labels) {
      const prev = this.ctx.labels.get(l);
      if (prev && prev !== node) throw this.error(`duplicate label "${l}" (already on ${prev.path})`);
      this.ctx.labels.set(l, node);
      if (!node.labels.includes(l)) node.labels.push(l);
    }
  }

  private deleteNode(n: DtNode): void {
    for (const d of n.walk()) {
      for (const l of d.labels) if (this.ctx.labels.get(l) === d) this.ctx.labels.delete(l);
      this.ctx.pending.delete(d);
    }
    n.parent!.removeChild(n);
  }

  private body(node: DtNode): void {
    this.bodyItems(node, false);
    this.expect('}');
  }

  private bodyItems(node: DtNode, toEof: boolean): void {
    const saved = this.bodyTarget;
    this.bodyTarget = node;
    for (;;) {
      const c = this.peek();
      if (c === undefined) {
        if (toEof) break;
        throw this.error(`unexpected end of input inside node ${node.path} (missing "}")`);
      }
      if (c === '}') {
        if (toEof) throw this.error('unexpected "}" in included file');
        break;
      }
      const d = this.directive();
      if (d === 'include') {
        this.include();
        continue;
      }
      if (d === 'delete-property') {
        this.pos += '/delete-property/'.length;
        const name = this.word();
        node.properties.delete(name);
        this.ctx.pending.get(node)?.delete(name);
        this.expect(';');
        continue;
      }
      if (d === 'delete-node') {
        this.pos += '/delete-node/'.length;
        const name = this.word();
        // dtc silently ignores deleting a node that does not exist; so do we.
        const child = node.child(name);
        if (child) this.deleteNode(child);
        this.expect(';');
        continue;
      }
      if (d === 'omit-if-no-ref') {
        this.pos += '/omit-if-no-ref/'.length;
        continue;
      }
      if (
        c === '#' &&
        /^#(include|define|if|ifdef|ifndef|endif|undef|else|elif)\b/.test(
          this.src.slice(this.pos, this.pos + 10),
        )
      ) {
        throw this.error('C preprocessor directive: run cpp (and dtc) first, or use /include/ "file"');
      }
      const labels = this.labels();
      const at = this.pos;
      const name = this.word();
      const c2 = this.peek();
      if (c2 === '{') {
        if (name.includes('=')) throw this.error(`bad node name "${name}"`, at);
        if (node.depth + 1 >= MAX_NODE_DEPTH)
          throw this.error(`node ${node.path}/${name} is ${NODE_TOO_DEEP}`, at);
        let child = node.child(name);
        if (!child) {
          child = node.addChild(new DtNode(name));
          child.srcPos = this.srcPos(at);
        }
        this.addLabels(child, labels);
        this.pos++;
        this.body(child);
        this.expect(';');
      } else if (c2 === '=') {
        this.pos++;
        const chunks = this.valueList();
        this.expect(';');
        this.setProp(node, name, chunks);
        this.propAt(node, name, at);
      } else if (c2 === ';') {
        this.pos++;
        this.setProp(node, name, []);
        this.propAt(node, name, at);
      } else {
        const got = c2 === undefined ? 'end of input' : `"${c2}"`;
        throw this.error(`expected "=", ";" or "{" after "${name}", found ${got}`);
      }
    }
    this.bodyTarget = saved;
  }

  private propAt(node: DtNode, name: string, at: number): void {
    if (node.propPos === null) node.propPos = new Map();
    node.propPos.set(name, this.srcPos(at));
  }

  private setProp(node: DtNode, name: string, chunks: Chunk[]): void {
    if (chunks.every((c) => c instanceof Uint8Array)) {
      node.properties.set(name, concat(chunks as Uint8Array[]));
      this.ctx.pending.get(node)?.delete(name);
    } else {
      // Keep the property's position in insertion order; resolve later.
      node.properties.set(name, new Uint8Array(0));
      let m = this.ctx.pending.get(node);
      if (!m) this.ctx.pending.set(node, (m = new Map()));
      m.set(name, chunks);
    }
  }

  private valueList(): Chunk[] {
    const chunks: Chunk[] = [];
    for (;;) {
      this.labels();
      const d = this.directive();
      const c = this.peek();
      if (d === 'bits') {
        this.pos += '/bits/'.length;
        const at = this.pos;
        const bits = Number(this.integer());
        if (![8, 16, 32, 64].includes(bits))
          throw this.error(`/bits/ must be 8, 16, 32 or 64, not ${bits}`, at);
        this.expect('<');
        this.cells(bits, chunks);
      } else if (c === '<') {
        this.pos++;
        this.cells(32, chunks);
      } else if (c === '"') {
        const s = this.stringLiteral();
        const b = new Uint8Array(s.length + 1);
        b.set(s);
        chunks.push(b);
      } else if (c === '[') {
        this.pos++;
        chunks.push(this.bytes());
      } else if (c === '&') {
        const r = this.reference();
        chunks.push({ kind: 'path', ref: r.ref, file: this.file, at: r.at });
      } else {
        throw this.error(
          `expected a property value (<cells>, "string", [bytes] or &ref), found ${c === undefined ? 'end of input' : `"${c}"`}`,
        );
      }
      this.labels();
      if (this.peek() === ',') {
        this.pos++;
        continue;
      }
      return chunks;
    }
  }

  private cells(bits: number, chunks: Chunk[]): void {
    const bytes = bits / 8;
    const out: number[] = [];
    const flush = () => {
      if (out.length > 0) chunks.push(Uint8Array.from(out));
      out.length = 0;
    };
    const limit = (1n << BigInt(bits)) - 1n;
    for (;;) {
      this.labels();
      const c = this.peek();
      if (c === '>') {
        this.pos++;
        break;
      }
      if (c === undefined) throw this.error('unterminated <cells> (missing ">")');
      if (c === '&') {
        const r = this.reference();
        if (bits !== 32) throw this.error('phandle references are only allowed in 32-bit cells', r.at);
        flush();
        chunks.push({ kind: 'phandle', ref: r.ref, file: this.file, at: r.at });
        continue;
      }
      const v = this.primary() & limit;
      for (let i = bytes - 1; i >= 0; i--) out.push(Number((v >> BigInt(i * 8)) & 0xffn));
    }
    flush();
  }

  private bytes(): Uint8Array {
    const out: number[] = [];
    for (;;) {
      this.labels();
      const c = this.peek();
      if (c === ']') {
        this.pos++;
        return Uint8Array.from(out);
      }
      const a = this.src[this.pos];
      const b = this.src[this.pos + 1];
      if (a === undefined || b === undefined || !/[0-9a-fA-F]/.test(a) || !/[0-9a-fA-F]/.test(b)) {
        throw this.error('expected two hex digits in [bytes]');
      }
      out.push(Number.parseInt(a + b, 16));
      this.pos += 2;
    }
  }

  private stringLiteral(): Uint8Array {
    this.skipWs();
    const start = this.pos;
    this.pos++; // opening quote
    const out: number[] = [];
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined || c === '\n') throw this.error('unterminated string', start);
      if (c === '"') {
        this.pos++;
        return Uint8Array.from(out);
      }
      if (c === '\\') {
        out.push(this.escape());
        continue;
      }
      const u = this.src.charCodeAt(this.pos);
      if (u < 0x80) {
        out.push(u); // ASCII: its own UTF-8 byte
        this.pos++;
        continue;
      }
      const cp = this.src.codePointAt(this.pos)!;
      const s = String.fromCodePoint(cp);
      for (const b of utf8Enc.encode(s)) out.push(b);
      this.pos += s.length;
    }
  }

  private escape(): number {
    const at = this.pos;
    this.pos++; // backslash
    const c = this.src[this.pos++];
    switch (c) {
      case 'a':
        return 7;
      case 'b':
        return 8;
      case 't':
        return 9;
      case 'n':
        return 10;
      case 'v':
        return 11;
      case 'f':
        return 12;
      case 'r':
        return 13;
      case 'x': {
        const m = /^[0-9a-fA-F]{1,2}/.exec(this.src.slice(this.pos, this.pos + 2));
        if (!m) throw this.error('bad \\x escape', at);
        this.pos += m[0].length;
        return Number.parseInt(m[0], 16);
      }
      case undefined:
        throw this.error('unterminated escape', at);
      default: {
        if (/[0-7]/.test(c)) {
          const m = /^[0-7]{0,2}/.exec(this.src.slice(this.pos, this.pos + 2))!;
          this.pos += m[0].length;
          return Number.parseInt(c + m[0], 8) & 0xff;
        }
        return c.charCodeAt(0) & 0xff;
      }
    }
  }

  /** An integer literal (used by /memreserve/ and /bits/). */
  private integer(): bigint {
    return this.primary();
  }

  /** A cell value: literal, 'c' char, or (expression). */
  private primary(): bigint {
    const c = this.peek();
    const at = this.pos;
    if (c === '(') {
      this.pos++;
      const v = this.expr();
      this.expect(')');
      return v;
    }
    if (c === "'") {
      this.pos++;
      let v: number;
      if (this.src[this.pos] === '\\') v = this.escape();
      else {
        const ch = this.src[this.pos];
        if (ch === undefined) throw this.error('unterminated character literal', at);
        v = ch.charCodeAt(0);
        this.pos++;
      }
      if (this.src[this.pos] !== "'") throw this.error('unterminated character literal', at);
      this.pos++;
      return BigInt(v);
    }
    const m = /^(0[xX][0-9a-fA-F]+|[0-9]+)([uU]?[lL]{0,2}|[lL]{1,2}[uU]?)(?![A-Za-z0-9_])/.exec(
      this.src.slice(this.pos, this.pos + 80),
    );
    if (!m) {
      const w = /^[^\s<>()]*/.exec(this.src.slice(this.pos, this.pos + 40))![0];
      throw this.error(`expected an integer, found "${w || (c ?? 'end of input')}"`, at);
    }
    this.pos += m[0].length;
    const lit = m[1]!;
    let v: bigint;
    if (/^0[0-7]+$/.test(lit)) v = BigInt(`0o${lit.slice(1)}`);
    else if (/^0[0-9]+$/.test(lit)) throw this.error(`bad octal literal "${lit}"`, at);
    else v = BigInt(lit);
    if (v > MASK64) throw this.error(`integer literal ${lit} does not fit in 64 bits`, at);
    return v;
  }

  /** Parentheses / ?: levels open in the expression being read. */
  private exprDepth = 0;

  // Integer expressions with C precedence, evaluated in 64-bit unsigned arithmetic like dtc.
  private expr(): bigint {
    if (this.exprDepth >= MAX_EXPR_DEPTH)
      throw this.error(`expression nested more than ${MAX_EXPR_DEPTH} levels deep`);
    this.exprDepth++;
    const cond = this.binary(0);
    let v = cond;
    if (this.peek() === '?') {
      this.pos++;
      const a = this.expr();
      this.expect(':');
      const b = this.expr();
      v = cond !== 0n ? a : b;
    }
    this.exprDepth--;
    return v;
  }

  private static readonly OPS: Array<[string, number]> = [
    ['||', 1],
    ['&&', 2],
    ['|', 3],
    ['^', 4],
    ['&', 5],
    ['==', 6],
    ['!=', 6],
    ['<=', 7],
    ['>=', 7],
    ['<<', 8],
    ['>>', 8],
    ['<', 7],
    ['>', 7],
    ['+', 9],
    ['-', 9],
    ['*', 10],
    ['/', 10],
    ['%', 10],
  ];

  private binary(minPrec: number): bigint {
    let lhs = this.unary();
    for (;;) {
      this.skipWs();
      const rest = this.src.slice(this.pos, this.pos + 2);
      const op = Parser.OPS.find(
        ([o]) => rest.startsWith(o) && !(o === '|' && rest === '||') && !(o === '&' && rest === '&&'),
      );
      if (!op || op[1] < minPrec) return lhs;
      const at = this.pos;
      this.pos += op[0].length;
      const rhs = this.binary(op[1] + 1);
      lhs = applyOp(op[0], lhs, rhs, () => this.error('division by zero', at));
    }
  }

  /** Prefix operators, then the operand; applied innermost first, in a loop (any number of them). */
  private unary(): bigint {
    let ops = '';
    for (let c = this.peek(); c === '-' || c === '~' || c === '!'; c = this.peek()) {
      ops += c;
      this.pos++;
    }
    let v = this.primary();
    for (let i = ops.length - 1; i >= 0; i--) {
      const op = ops[i];
      v = op === '-' ? -v & MASK64 : op === '~' ? ~v & MASK64 : v === 0n ? 1n : 0n;
    }
    return v;
  }
}

function applyOp(op: string, a: bigint, b: bigint, divZero: () => Error): bigint {
  switch (op) {
    case '||':
      return a !== 0n || b !== 0n ? 1n : 0n;
    case '&&':
      return a !== 0n && b !== 0n ? 1n : 0n;
    case '|':
      return a | b;
    case '^':
      return a ^ b;
    case '&':
      return a & b;
    case '==':
      return a === b ? 1n : 0n;
    case '!=':
      return a !== b ? 1n : 0n;
    case '<':
      return a < b ? 1n : 0n;
    case '>':
      return a > b ? 1n : 0n;
    case '<=':
      return a <= b ? 1n : 0n;
    case '>=':
      return a >= b ? 1n : 0n;
    case '<<':
      return b >= 64n ? 0n : (a << b) & MASK64;
    case '>>':
      return b >= 64n ? 0n : a >> b;
    case '+':
      return (a + b) & MASK64;
    case '-':
      return (a - b) & MASK64;
    case '*':
      return (a * b) & MASK64;
    case '/':
      if (b === 0n) throw divZero();
      return a / b;
    default:
      if (b === 0n) throw divZero();
      return a % b;
  }
}

function resolveRef(ctx: Ctx, ref: string): DtNode | undefined {
  if (ref.startsWith('/')) {
    let n: DtNode | undefined = ctx.root;
    for (const part of ref.split('/')) {
      if (part === '' || !n) continue;
      n = n.child(part) ?? n.children.find((c) => c.baseName === part);
    }
    return n;
  }
  if (!LABEL.test(ref)) return undefined;
  return ctx.labels.get(ref);
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Resolves &refs in tree order, giving referenced nodes phandles as dtc does (lowest unused first). */
function resolveReferences(tree: DeviceTree, ctx: Ctx): void {
  const used = new Set<number>();
  for (const n of tree.root.walk()) {
    const p = n.phandle;
    if (p !== undefined) used.add(p);
  }
  let next = 1;
  const phandleOf = (n: DtNode): number => {
    const p = n.phandle;
    if (p !== undefined) return p;
    while (used.has(next)) next++;
    const ph = next++;
    used.add(ph);
    n.properties.set('phandle', encodeCells([ph]));
    return ph;
  };
  for (const n of tree.root.walk()) {
    const props = ctx.pending.get(n);
    if (!props) continue;
    for (const [name, chunks] of props) {
      const parts: Uint8Array[] = [];
      for (const c of chunks) {
        if (c instanceof Uint8Array) {
          parts.push(c);
          continue;
        }
        const target = resolveRef(ctx, c.ref);
        if (!target || !tree.contains(target)) {
          const detail = `reference to "${c.ref}" not found (in ${n.path}:${name})`;
          const p = ctx.parsers.get(c.file)?.srcPos(c.at);
          if (p !== undefined) throw new DtsError(p.file, c.at, p.line, p.column, detail);
          throw dtsError(ctx.sources.get(c.file) ?? '', c.file, c.at, detail);
        }
        if (c.kind === 'phandle') parts.push(encodeCells([phandleOf(target)]));
        else parts.push(utf8Enc.encode(`${target.path}\0`));
      }
      n.properties.set(name, concat(parts));
    }
  }
  tree.invalidate();
}
