// The reflection of WGSL modules kept on disk (src/gpu/reflect.ts): read back instead of
// reflecting again, made again where the file is not one, and never needed for correctness.
// No device: reflection is host-side.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { entryInfo, forgetReflections, moduleOverrides } from '../../src/gpu/reflect.js';

const SOURCE = [
  '@group(0) @binding(0) var<storage, read_write> out: array<f32>;',
  '@group(0) @binding(1) var<uniform> dims: Dims;',
  'struct Dims { n: u32, scale: f32 }',
  'override N: u32 = 1u;',
  '@compute @workgroup_size(1) fn main() { out[0] = f32(N + dims.n) * dims.scale; }',
].join('\n');

describe('the reflection cache', () => {
  let dir = '';
  let before: string | undefined;
  const files = () => readdirSync(join(dir, 'wgsl-reflection'));

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fisher-reflection-'));
    before = process.env['FISHER_GPU_CACHE_DIR'];
    process.env['FISHER_GPU_CACHE_DIR'] = dir;
    forgetReflections();
  });

  afterEach(() => {
    if (before === undefined) delete process.env['FISHER_GPU_CACHE_DIR'];
    else process.env['FISHER_GPU_CACHE_DIR'] = before;
    forgetReflections();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps a module\'s reflection on disk, and a new process reads it instead of reflecting again', async () => {
    const info = await entryInfo(SOURCE, 'main');
    expect(info.bindings.map((b) => [b.name, b.kind])).toEqual([['out', 'storage'], ['dims', 'uniform']]);
    expect(files()).toHaveLength(1);
    const file = join(dir, 'wgsl-reflection', files()[0]!);
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    expect(stored.entries.main).toEqual(info);
    // As a new process would: what the file says is what it gets (doctored here, to tell it from a reflection).
    stored.entries.main.bindings[0].name = 'from_the_file';
    writeFileSync(file, JSON.stringify(stored));
    forgetReflections();
    expect((await entryInfo(SOURCE, 'main')).bindings[0]!.name).toBe('from_the_file');
    expect(await moduleOverrides(SOURCE)).toEqual(['N']);
  });

  it('reflects again where the file is not a reflection; a source changed by one character is a new file', async () => {
    const info = await entryInfo(SOURCE, 'main');
    const file = join(dir, 'wgsl-reflection', files()[0]!);
    for (const junk of ['{"overrides": 3', '{"overrides": [], "entries": {"main": {}}}', 'null']) {
      writeFileSync(file, junk);
      forgetReflections();
      expect(await entryInfo(SOURCE, 'main')).toEqual(info);
    }
    await entryInfo(`${SOURCE} `, 'main');
    expect(files()).toHaveLength(2);
    expect(files().filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('keeps why an entry point cannot be used, and says so from the file as from the reflection', async () => {
    const bad = '@group(1) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(1) fn main() { out[0] = 1.0; }';
    await expect(entryInfo(bad, 'main')).rejects.toThrow(/main: binding out is in group 1; kernels use group 0 only/);
    forgetReflections();
    await expect(entryInfo(bad, 'main')).rejects.toThrow(/main: binding out is in group 1; kernels use group 0 only/);
    await expect(entryInfo(bad, 'other')).rejects.toThrow(/no @compute entry point "other" \(have main\)/);
  });

  it('reflects all the same where the cache directory cannot be written', async () => {
    const blocked = join(dir, 'a-file');
    writeFileSync(blocked, 'not a directory');
    process.env['FISHER_GPU_CACHE_DIR'] = blocked;
    expect((await entryInfo(SOURCE, 'main')).bindings.map((b) => b.name)).toEqual(['out', 'dims']);
    expect(readdirSync(dir)).toEqual(['a-file']);
  });
});
