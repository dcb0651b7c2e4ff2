// The in-memory device tree shared by the dtb reader, the DTS reader and the FDT writer.
// Properties are kept as raw big-endian bytes, as in the FDT; helpers decode them on demand,
// like Linux's of_property_read_*(), so there is one source of truth per property.

const utf8 = new TextDecoder('utf-8');
const utf8Enc = new TextEncoder();

/**
 * Nodes are at most this many levels deep, the root being at depth 0: Linux's FDT_MAX_DEPTH
 * (unflatten_dt_nodes ignores deeper nodes, with a WARN). The dtb and DTS readers refuse deeper
 * nodes with an error naming them, so everything that walks a tree from outside stays shallow.
 */
export const MAX_NODE_DEPTH = 64;

/** How the readers say that a node is too deep ("node /a/b/... is " + this). */
export const NODE_TOO_DEEP = `nested more than ${MAX_NODE_DEPTH - 1} levels deep below the root (Linux ignores nodes that deep: FDT_MAX_DEPTH ${MAX_NODE_DEPTH})`;

/** One /memreserve/ entry. 64-bit values, so bigint. */
export interface MemReserve {
  address: bigint;
  size: bigint;
}

/** Where something was written in DTS source (after cpp line markers: the original file). */
export interface SrcPos {
  file: string;
  line: number;
  column: number;
}

export class DtNode {
  /** Full node name including the unit address, e.g. "iommu@9000000"; "" for the root. */
  readonly name: string;
  /** Where the node was first written (DTS input only), or null. */
  srcPos: SrcPos | null = null;
  /** Where each property was last written (DTS input only), or null. */
  propPos: Map<string, SrcPos> | null = null;
  parent: DtNode | null = null;
  readonly children: DtNode[] = [];
  /** Insertion-ordered properties, raw bytes. */
  readonly properties = new Map<string, Uint8Array>();
  /** DTS labels (empty for trees read from a dtb, which has no labels; see __symbols__). */
  readonly labels: string[] = [];
  /** Children by name (the first of a name), built on the first lookup among many children. */
  private byName: Map<string, DtNode> | null = null;

  constructor(name: string) {
    this.name = name;
  }

  /** Node name without the unit address ("iommu" for "iommu@9000000"). */
  get baseName(): string {
    const at = this.name.indexOf('@');
    return at < 0 ? this.name : this.name.slice(0, at);
  }

  /** Unit address ("9000000" for "iommu@9000000"), or null. */
  get unitAddress(): string | null {
    const at = this.name.indexOf('@');
    return at < 0 ? null : this.name.slice(at + 1);
  }

  /** Full path; built bottom-up without recursion (a tree built in code may be arbitrarily deep). */
  get path(): string {
    if (!this.parent) return '/';
    const names: string[] = [];
    for (let n: DtNode | null = this; n?.parent; n = n.parent) names.push(n.name);
    return `/${names.reverse().join('/')}`;
  }

  /** Levels below the root (the root is at depth 0). */
  get depth(): number {
    let d = 0;
    for (let n = this.parent; n; n = n.parent) d++;
    return d;
  }

  has(name: string): boolean {
    return this.properties.has(name);
  }

  prop(name: string): Uint8Array | undefined {
    return this.properties.get(name);
  }

  setProp(name: string, value: Uint8Array): void {
    this.properties.set(name, value);
  }

  child(name: string): DtNode | undefined {
    const c = this.children;
    if (c.length <= 16) return c.find((n) => n.name === name);
    // a wide node (a DTS reader looks up every new child): one index instead of a scan each time
    if (this.byName === null) {
      this.byName = new Map();
      for (const n of c) if (!this.byName.has(n.name)) this.byName.set(n.name, n);
    }
    return this.byName.get(name);
  }

  addChild(node: DtNode): DtNode {
    node.parent = this;
    this.children.push(node);
    if (this.byName !== null && !this.byName.has(node.name)) this.byName.set(node.name, node);
    return node;
  }

  removeChild(node: DtNode): void {
    const i = this.children.indexOf(node);
    if (i >= 0) this.children.splice(i, 1);
    node.parent = null;
    this.byName = null;
  }

  /** All big-endian u32 cells of a property; undefined if absent or not a multiple of 4 bytes. */
  u32Array(name: string): number[] | undefined {
    const v = this.properties.get(name);
    if (!v || v.length % 4 !== 0) return undefined;
    return cellsOf(v);
  }

  /** The first u32 cell of a property (of_property_read_u32). */
  u32(name: string): number | undefined {
    const v = this.properties.get(name);
    if (!v || v.length < 4) return undefined;
    return ((v[0]! << 24) | (v[1]! << 16) | (v[2]! << 8) | v[3]!) >>> 0;
  }

  /** The first string of a property (of_property_read_string). */
  string(name: string): string | undefined {
    const list = this.strings(name);
    return list?.[0];
  }

  /** A string-list property; undefined if absent. Tolerates a missing final NUL. */
  strings(name: string): string[] | undefined {
    const v = this.properties.get(name);
    if (!v) return undefined;
    return decodeStringList(v);
  }

  /** Compatible strings, most specific first. */
  get compatible(): string[] {
    return this.strings('compatible') ?? [];
  }

  isCompatible(compat: string): boolean {
    return this.compatible.includes(compat);
  }

  /** of_device_is_available(): status absent, "okay" or "ok". */
  get available(): boolean {
    const s = this.string('status');
    return s === undefined || s === 'okay' || s === 'ok';
  }

  /** The node's phandle (phandle, or the legacy linux,phandle), if any. */
  get phandle(): number | undefined {
    return this.u32('phandle') ?? this.u32('linux,phandle');
  }

  /** #address-cells that applies to this node's children (default 2, as the spec says). */
  get addressCells(): number {
    return this.u32('#address-cells') ?? 2;
  }

  /** #size-cells that applies to this node's children (default 1). */
  get sizeCells(): number {
    return this.u32('#size-cells') ?? 1;
  }

  /** Depth-first pre-order walk of this node and its descendants. */
  *walk(): Generator<DtNode> {
    const stack: DtNode[] = [this];
    while (stack.length > 0) {
      const n = stack.pop()!;
      yield n;
      for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]!);
    }
  }
}

export class DeviceTree {
  readonly root: DtNode;
  readonly memReserve: MemReserve[];
  bootCpuidPhys: number;
  private phandleIndex: Map<number, DtNode> | null = null;

  constructor(root: DtNode = new DtNode(''), memReserve: MemReserve[] = [], bootCpuidPhys = 0) {
    this.root = root;
    this.memReserve = memReserve;
    this.bootCpuidPhys = bootCpuidPhys;
  }

  /** Finds a node by absolute path ("/soc/iommu@9000000") or by an alias name (whose value is a path). */
  findByPath(path: string): DtNode | undefined {
    if (!path.startsWith('/')) {
      // an alias must hold a full path (of_alias_scan); one naming another alias, or itself, finds nothing
      const alias = this.root.child('aliases')?.string(path);
      if (alias === undefined || !alias.startsWith('/')) return undefined;
      path = alias;
    }
    let n: DtNode | undefined = this.root;
    for (const part of path.split('/')) {
      if (part === '' || !n) continue;
      // Allow omitting the unit address when it is unambiguous, as of_find_node_by_path does.
      n = n.child(part) ?? n.children.find((c) => c.baseName === part);
    }
    return n;
  }

  findByPhandle(ph: number): DtNode | undefined {
    if (ph === 0 || ph === 0xffffffff) return undefined;
    if (!this.phandleIndex) {
      this.phandleIndex = new Map();
      for (const n of this.root.walk()) {
        const p = n.phandle;
        if (p !== undefined && !this.phandleIndex.has(p)) this.phandleIndex.set(p, n);
      }
    }
    const n = this.phandleIndex.get(ph);
    if (n === undefined || (n.phandle === ph && this.contains(n))) return n;
    // A stale hit after a run-time edit: rebuild once.
    this.phandleIndex = null;
    return this.findByPhandle(ph);
  }

  /** Call after editing the tree (adding nodes or phandles) at run time. */
  invalidate(): void {
    this.phandleIndex = null;
  }

  contains(n: DtNode): boolean {
    let p: DtNode | null = n;
    while (p?.parent) p = p.parent;
    return p === this.root;
  }

  *nodes(): Generator<DtNode> {
    yield* this.root.walk();
  }

  /** Highest phandle in use (0 if none). */
  maxPhandle(): number {
    let m = 0;
    for (const n of this.root.walk()) {
      const p = n.phandle;
      if (p !== undefined && p !== 0xffffffff && p > m) m = p;
    }
    return m;
  }
}

export function cellsOf(v: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i + 4 <= v.length; i += 4) {
    out.push(((v[i]! << 24) | (v[i + 1]! << 16) | (v[i + 2]! << 8) | v[i + 3]!) >>> 0);
  }
  return out;
}

export function decodeStringList(v: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < v.length; i++) {
    if (v[i] === 0) {
      out.push(utf8.decode(v.subarray(start, i)));
      start = i + 1;
    }
  }
  if (start < v.length) out.push(utf8.decode(v.subarray(start)));
  return out;
}

/** Encodes u32 cells big-endian. */
export function encodeCells(cells: readonly number[]): Uint8Array {
  const out = new Uint8Array(cells.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < cells.length; i++) dv.setUint32(i * 4, cells[i]! >>> 0);
  return out;
}

/** Encodes a NUL-separated string list. */
export function encodeStrings(list: readonly string[]): Uint8Array {
  const parts = list.map((s) => utf8Enc.encode(s));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length + 1, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length + 1;
  }
  return out;
}

/** Reads a number of `count` cells (1 or 2 usually) as bigint. */
export function cellsToBigInt(cells: readonly number[], start: number, count: number): bigint {
  let v = 0n;
  for (let i = 0; i < count; i++) v = (v << 32n) | BigInt(cells[start + i] ?? 0);
  return v;
}

export function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`;
}

/** One phandle-with-args entry (of_phandle_args). */
export interface PhandleArgs {
  node: DtNode;
  args: number[];
}

export type PhandleListResult =
  | { ok: true; entries: PhandleArgs[] }
  | { ok: false; error: string; entries: PhandleArgs[] };

/**
 * of_parse_phandle_with_args over a whole list ("iommus", "#iommu-cells"): each entry is a phandle
 * followed by as many cells as the target's `cellsName` says. A missing target or cell count is an
 * error naming the cell index; entries parsed before it are returned.
 */
export function parsePhandleList(
  tree: DeviceTree,
  node: DtNode,
  listName: string,
  cellsName: string,
  defaultCells?: number,
): PhandleListResult {
  const cells = node.u32Array(listName);
  const entries: PhandleArgs[] = [];
  if (!cells) {
    if (node.has(listName))
      return { ok: false, error: `${listName}: length is not a multiple of 4`, entries };
    return { ok: true, entries };
  }
  let i = 0;
  while (i < cells.length) {
    const ph = cells[i]!;
    if (ph === 0) {
      // A zero phandle is an empty entry (of_for_each_phandle skips it).
      i++;
      continue;
    }
    const target = tree.findByPhandle(ph);
    if (!target)
      return { ok: false, error: `${listName}[cell ${i}]: no node with phandle ${hex(ph)}`, entries };
    const n = target.u32(cellsName) ?? defaultCells;
    if (n === undefined) {
      return { ok: false, error: `${listName}[cell ${i}]: ${target.path} has no ${cellsName}`, entries };
    }
    if (i + 1 + n > cells.length) {
      return { ok: false, error: `${listName}[cell ${i}]: needs ${n} argument cells, list ends`, entries };
    }
    entries.push({ node: target, args: cells.slice(i + 1, i + 1 + n) });
    i += 1 + n;
  }
  return { ok: true, entries };
}
