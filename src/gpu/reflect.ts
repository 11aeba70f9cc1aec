/**
 * What the host knows of a WGSL module comes from the module itself, read
 * with wgsl_reflect: each entry point's bindings (name, group, binding,
 * kind), the layout of its uniform struct, the module's overrides, and u32
 * constants. No binding table is kept by hand anywhere else.
 *
 * Reflecting matmul.wgsl takes wgsl_reflect 0.05–0.15 s of the main thread
 * (on lavapipe's 2-core machine about 0.2 s of every run's start, all
 * modules together: bench/RESULTS.md, issue 12's sixth part), so what a
 * module's reflection yields is also kept on disk, in the cache directory
 * (cache-dir.ts), in a file named by a hash of the source and of
 * wgsl_reflect's version: a changed source is a new file, never a stale one.
 * wgsl_reflect itself is loaded only when a reflection is not there.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';
import { readCached, writeCached } from './cache-dir.js';

export interface BindingInfo {
  name: string;
  binding: number;
  kind: 'uniform' | 'read-only-storage' | 'storage';
}

export interface UniformMember {
  name: string;
  offset: number;
  type: 'u32' | 'i32' | 'f32';
}

export interface EntryInfo {
  name: string;
  /** Group 0 bindings, sorted by binding index. */
  bindings: BindingInfo[];
  /** The uniform struct's members, if the entry uses one. */
  uniform?: { name: string; size: number; members: UniformMember[] };
}

/** What the host uses of a module: its overrides, and each compute entry point's bindings and uniform, or why it cannot use it. */
interface ModuleReflection {
  overrides: string[];
  entries: Record<string, EntryInfo | { error: string }>;
}

const modules = new Map<string, ModuleReflection>();

async function reflect(source: string): Promise<ModuleReflection> {
  let m = modules.get(source);
  if (!m) {
    const name = cacheName(source);
    m = readReflection(name);
    if (!m) {
      m = await reflectNow(source);
      writeCached(name, m);
    }
    modules.set(source, m);
  }
  return m;
}

/** wgsl_reflect itself, loaded only when a reflection is not in the cache (15–25 ms of every start otherwise). */
let parser: Promise<typeof import('wgsl_reflect/wgsl_reflect.module.js')> | undefined;

async function reflectNow(source: string): Promise<ModuleReflection> {
  const { WgslReflect } = await (parser ??= import('wgsl_reflect/wgsl_reflect.module.js'));
  const r = new WgslReflect(source);
  const entries: ModuleReflection['entries'] = {};
  for (const fn of r.entry.compute) {
    try {
      entries[fn.name] = entryOf(fn);
    } catch (e) {
      entries[fn.name] = { error: (e as Error).message };
    }
  }
  return { overrides: r.overrides.map((o) => o.name), entries };
}

/** Reflects one compute entry point of `source`. */
export async function entryInfo(source: string, entry: string): Promise<EntryInfo> {
  const { entries } = await reflect(source);
  const info = Object.hasOwn(entries, entry) ? entries[entry]! : undefined;
  if (!info) throw new Error(`no @compute entry point "${entry}" (have ${Object.keys(entries).join(', ')})`);
  if ('error' in info) throw new Error(info.error);
  return info;
}

function entryOf(fn: WgslReflect['entry']['compute'][number]): EntryInfo {
  const entry = fn.name;
  const bindings: BindingInfo[] = [];
  let uniform: EntryInfo['uniform'];
  for (const res of fn.resources) {
    if (res.group !== 0) throw new Error(`${entry}: binding ${res.name} is in group ${res.group}; kernels use group 0 only`);
    if (res.resourceType === 0 /* Uniform */) {
      bindings.push({ name: res.name, binding: res.binding, kind: 'uniform' });
      const members = (res.type as { members?: { name: string; offset: number; type: { name: string } }[] }).members ?? [];
      uniform = {
        name: res.name,
        size: res.type.size,
        members: members.map((m) => {
          const t = m.type.name;
          if (t !== 'u32' && t !== 'i32' && t !== 'f32') throw new Error(`${entry}: uniform member ${m.name} has type ${t}; only scalars are supported`);
          return { name: m.name, offset: m.offset, type: t };
        }),
      };
    } else if (res.resourceType === 1 /* Storage */) {
      bindings.push({ name: res.name, binding: res.binding, kind: res.access === 'read' ? 'read-only-storage' : 'storage' });
    } else {
      throw new Error(`${entry}: binding ${res.name} is not a buffer`);
    }
  }
  bindings.sort((a, b) => a.binding - b.binding);
  return { name: entry, bindings, ...(uniform ? { uniform } : {}) };
}

/** Every override the module declares. */
export async function moduleOverrides(source: string): Promise<string[]> {
  return (await reflect(source)).overrides;
}

/** The reflection's form on disk; a new one is a new file name. */
const FORMAT = 1;

function wgslReflectVersion(): string {
  try {
    return String((createRequire(import.meta.url)('wgsl_reflect/package.json') as { version: unknown }).version);
  } catch {
    return 'unknown';
  }
}

let keyPrefix: string | undefined;

/** The cache directory's file that holds the reflection of `source`. */
function cacheName(source: string): string {
  keyPrefix ??= `fisher-gpu reflection ${FORMAT}, wgsl_reflect ${wgslReflectVersion()}\n`;
  const hash = createHash('sha256').update(keyPrefix).update(source).digest('hex').slice(0, 32);
  return join('wgsl-reflection', `${hash}.json`);
}

/** The cached reflection, or undefined where there is none or it is not one (then it is made again). */
function readReflection(name: string): ModuleReflection | undefined {
  const m = readCached(name) as Partial<ModuleReflection> | null | undefined;
  if (typeof m !== 'object' || m === null) return undefined;
  const ok = Array.isArray(m.overrides) && typeof m.entries === 'object' && m.entries !== null && Object.values(m.entries).every((e) => typeof e === 'object' && e !== null && ('error' in e || Array.isArray(e.bindings)));
  return ok ? (m as ModuleReflection) : undefined;
}

/** @internal For tests: forgets the reflections held in memory, as a new process would not have them. */
export function forgetReflections(): void {
  modules.clear();
}

const constants = new Map<string, Map<string, number>>();

/**
 * The value of `const NAME: u32 = Ku;` in a WGSL source: how the host learns
 * the codes a shader switches on (activation and likelihood ids) from the
 * shader itself. Memoised per source, as callers ask on every dispatch.
 */
export function u32Constant(source: string, name: string): number {
  let known = constants.get(source);
  if (!known) constants.set(source, (known = new Map()));
  let value = known.get(name);
  if (value === undefined) {
    const m = new RegExp(`\\bconst\\s+${name}\\s*(?::\\s*u32\\s*)?=\\s*(\\d+)u?\\s*;`).exec(source);
    if (!m) throw new Error(`WGSL source declares no u32 constant ${name}`);
    value = Number(m[1]);
    known.set(name, value);
  }
  return value;
}

/** Packs named values into a uniform struct's bytes, checking every member is given. */
export function packUniform(info: NonNullable<EntryInfo['uniform']>, values: Readonly<Record<string, number>>): ArrayBuffer {
  const bytes = new ArrayBuffer(Math.max(16, Math.ceil(info.size / 16) * 16));
  const view = new DataView(bytes);
  const known = new Set(info.members.map((m) => m.name));
  for (const key of Object.keys(values)) if (!known.has(key)) throw new Error(`uniform ${info.name} has no member "${key}"`);
  for (const m of info.members) {
    const v = values[m.name];
    if (v === undefined) throw new Error(`uniform ${info.name}.${m.name} not given`);
    if (m.type === 'f32') view.setFloat32(m.offset, v, true);
    else {
      if (!Number.isInteger(v) || (m.type === 'u32' ? v < 0 || v > 0xffffffff : v < -0x80000000 || v > 0x7fffffff)) {
        throw new RangeError(`uniform ${info.name}.${m.name} = ${v} does not fit ${m.type}`);
      }
      if (m.type === 'u32') view.setUint32(m.offset, v, true);
      else view.setInt32(m.offset, v, true);
    }
  }
  return bytes;
}
