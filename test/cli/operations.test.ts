/**
 * The commands that use a Fisher file, through a private build of the
 * `fisher` command, as a user runs them: shards computed as parallel
 * processes and merged, products, solves, spectra, statistics, the EWC
 * penalty and Fisher-weighted model merging, and their one-line errors.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFisher } from '../../src/fisher/load.js';
import { parameterTensors, readParameterVector } from '../../src/fisher/vectors.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { Rng } from '../../src/model/random.js';
import { CpuEngine } from '../../src/engine/cpu.js';
import { DATA_LABELS } from '../../src/engine/engine.js';
import { Dataset } from '../../src/model/data.js';
import { Network } from '../../src/model/network.js';
import { expectClose, expectRelativeError } from '../helpers/compare.js';
// @ts-expect-error: a plain ES module of the build, without declarations
import { buildAll } from '../../tools/build.mjs';

const run = promisify(execFile);
let dir = '';
let buildDir = '';
let cli = '';

async function fisher(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { cwd: dir });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** Our lines of stderr (Dawn's notices are not ours). */
const ours = (stderr: string) => stderr.split('\n').filter((l) => l && !l.startsWith('Warning: '));
const inputs = ['--model', 'ex/model.json', '--weights', 'ex/weights.safetensors', '--data', 'ex/data.safetensors'];
const at = (name: string) => join(dir, name);

beforeAll(async () => {
  await mkdir(join(__dirname, '../../node_modules/.cache'), { recursive: true });
  dir = await mkdtemp(join(tmpdir(), 'fisher-ops-cli-'));
  buildDir = await mkdtemp(join(__dirname, '../../node_modules/.cache/fisher-ops-build-'));
  await buildAll({ declarations: false, outDir: buildDir });
  cli = join(buildDir, 'cli.js');
  const made = await fisher('example', '--out-dir', 'ex', '--widths', '8,6,3', '--samples', '157', '--seed', '5');
  expect(made.code, made.stderr).toBe(0);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(buildDir, { recursive: true, force: true });
});

describe('sharded runs', () => {
  // Shard counts spread over the structures: one shard, an even and an odd split, more shards than cores.
  it.each([
    ['diag', [1, 4]],
    ['kfac', [3]],
    ['full', [2]],
  ] as const)('%s: k shards as parallel processes merge into the single run, whatever k (k = %j)', async (structure, counts) => {
    const common = [...inputs, '--structure', structure, '--kind', 'mc', '--samples', '2', '--seed', '7', '--quiet'];
    const single = await fisher('compute', ...common, '--out', `${structure}-all.safetensors`);
    expect(single.code, single.stderr).toBe(0);
    const whole = await loadFisher(at(`${structure}-all.safetensors`));
    for (const k of counts) {
      const shards = await Promise.all(Array.from({ length: k }, (_, i) => fisher('compute', ...common, '--shard', `${i + 1}/${k}`, '--out', `${structure}-${k}-${i + 1}.safetensors`)));
      for (const s of shards) expect(s.code, s.stderr).toBe(0);
      const first = await readSafetensors(at(`${structure}-${k}-1.safetensors`));
      expect(first.metadata).toMatchObject({ shard: `1/${k}`, shard_total_n: '157' });
      // Listed in any order.
      const files = Array.from({ length: k }, (_, i) => `${structure}-${k}-${k - i}.safetensors`);
      const merged = await fisher('merge', ...files, '--out', `${structure}-${k}-merged.safetensors`);
      expect(merged.code, merged.stderr).toBe(0);
      const F = await loadFisher(at(`${structure}-${k}-merged.safetensors`));
      expect(F.info.n).toBe(157);
      expect(F.info.shard).toBeUndefined();
      expectRelativeError(F.toDense(), whole.toDense(), 1e-6, `${structure}: ${k} shards merged`);
    }
  });

  it('examples/cluster: the scripts a Slurm array or a Kubernetes Indexed Job run, as parallel local processes, then their merge', async () => {
    const scripts = join(__dirname, '../../examples/cluster');
    const env = { ...process.env, FISHER: `${process.execPath} ${cli}`, MODEL: 'ex/model.json', WEIGHTS: 'ex/weights.safetensors', DATA: 'ex/data.safetensors', OUT_DIR: 'cluster-shards', FISHER_ARGS: '--structure kfac --kind mc --samples 1 --seed 3' };
    await Promise.all([1, 2, 3, 4, 5].map((i) => run('bash', [join(scripts, 'shard.sh'), String(i), '5'], { cwd: dir, env })));
    await run('bash', [join(scripts, 'merge.sh'), '5', 'cluster.safetensors'], { cwd: dir, env });
    const single = await fisher('compute', ...inputs, '--structure', 'kfac', '--kind', 'mc', '--samples', '1', '--seed', '3', '--out', 'cluster-single.safetensors', '--quiet');
    expect(single.code, single.stderr).toBe(0);
    const [merged, whole] = await Promise.all([loadFisher(at('cluster.safetensors')), loadFisher(at('cluster-single.safetensors'))]);
    expectRelativeError(merged.toDense(), whole.toDense(), 1e-6, 'the cluster scripts');
  });

  it('refuses a missing, a repeated and a foreign shard, each in one line', async () => {
    const common = [...inputs, '--structure', 'diag', '--quiet'];
    for (const i of [1, 2, 3]) expect((await fisher('compute', ...common, '--shard', `${i}/3`, '--out', `d${i}.safetensors`)).code).toBe(0);
    expect((await fisher('compute', ...common, '--reduction', 'sum', '--shard', '3/3', '--out', 'foreign.safetensors')).code).toBe(0);
    expect((await fisher('compute', ...common, '--kind', 'mc', '--seed', '9', '--shard', '3/3', '--out', 'foreign2.safetensors')).code).toBe(0);
    const cases: [string[], RegExp][] = [
      [['d1.safetensors', 'd2.safetensors'], /shard 3\/3 missing/],
      [['d1.safetensors', 'd2.safetensors', 'd2.safetensors', 'd3.safetensors'], /shard 2\/3 is given twice/],
      [['d1.safetensors', 'd2.safetensors', 'foreign2.safetensors'], /foreign shard/],
      [['d1.safetensors', 'd2.safetensors', 'foreign.safetensors'], /foreign shard/],
    ];
    for (const [files, message] of cases) {
      const r = await fisher('merge', ...files, '--out', 'bad.safetensors');
      expect(r.code).toBe(1);
      expect(ours(r.stderr)).toEqual([expect.stringMatching(message)]);
    }
    expect((await readdir(dir)).filter((f) => f.startsWith('bad'))).toEqual([]);
  });
});

describe('operations on a Fisher file', () => {
  let p = 0;
  let g: Float64Array;
  beforeAll(async () => {
    for (const s of ['kfac', 'block', 'lowrank']) {
      const r = await fisher('compute', ...inputs, '--structure', s, ...(s === 'lowrank' ? ['--rank', '5'] : []), '--out', `op-${s}.safetensors`, '--quiet');
      expect(r.code, r.stderr).toBe(0);
    }
    const F = await loadFisher(at('op-kfac.safetensors'));
    p = F.size;
    g = Float64Array.from(new Rng(3).normals(p));
    await writeSafetensors(at('g.safetensors'), parameterTensors(F.layout, g, 'F64'));
  });

  it.each(['kfac', 'block', 'lowrank'])('%s: mv, solve (then mv gives g back), eig, stats and the EWC penalty agree with the library', async (s) => {
    const file = `op-${s}.safetensors`;
    const F = await loadFisher(at(file));
    const mv = await fisher('mv', '--fisher', file, '--vector', 'g.safetensors', '--out', `mv-${s}.safetensors`, '--dtype', 'F64');
    expect(mv.code, mv.stderr).toBe(0);
    expectClose((await readParameterVector(at(`mv-${s}.safetensors`), F.layout)).values, F.mv(g), { rtol: 1e-12, atol: 1e-15 }, 'mv');
    const damping = 1e-2 * (F.trace() / p);
    for (const method of ['exact', 'cg', ...(s === 'kfac' ? ['factored'] : [])]) {
      const solved = await fisher('solve', '--fisher', file, '--vector', 'g.safetensors', '--damping', String(damping), '--method', method, '--tolerance', '1e-10', '--out', `x-${s}.safetensors`, '--dtype', 'F64');
      expect(solved.code, solved.stderr).toBe(0);
      const x = (await readParameterVector(at(`x-${s}.safetensors`), F.layout)).values;
      if (method === 'factored') {
        expectClose(x, F.solve(g, { damping, method: 'factored' }), { rtol: 1e-12, atol: 1e-12 }, 'factored');
        continue;
      }
      expectRelativeError(F.mv(x).map((y, i) => y + damping * x[i]!), g, 1e-8, `${method}: (F + δI) x = g`);
    }
    if (s === 'block') {
      // The Cholesky on the device, refined in float64.
      const device = await fisher('solve', '--fisher', file, '--vector', 'g.safetensors', '--damping', String(damping), '--backend', 'gpu', '--out', 'x-device.safetensors', '--dtype', 'F64');
      expect(device.code, device.stderr).toBe(0);
      expect(device.stdout).toMatch(/Cholesky on the device for \d+ blocks, \d+ refinements? in float64/);
      const x = (await readParameterVector(at('x-device.safetensors'), F.layout)).values;
      expectRelativeError(F.mv(x).map((y, i) => y + damping * x[i]!), g, 1e-9, 'device: (F + δI) x = g');
      // Conjugate gradients stopped short: the last iterate is written, and stderr says so.
      const short = await fisher('solve', '--fisher', file, '--vector', 'g.safetensors', '--damping', String(damping), '--method', 'cg', '--max-iterations', '1', '--out', 'x-short.safetensors');
      expect(short.code, short.stderr).toBe(0);
      expect(ours(short.stderr)).toEqual([expect.stringMatching(/conjugate gradients stopped after 1 iterations/)]);
    }
    const eig = await fisher('eig', '--fisher', file, '--k', '3', '--json', '--out', `eig-${s}.safetensors`);
    expect(eig.code, eig.stderr).toBe(0);
    const top = JSON.parse(eig.stdout) as { eigenvalues: number[] };
    expectClose(top.eigenvalues, F.eig({ k: 3 }).values, { rtol: 1e-6 }, 'eigenvalues');
    expect((await readSafetensors(at(`eig-${s}.safetensors`))).tensors.get('eigenvectors')!.shape).toEqual([3, p]);
    const stats = await fisher('stats', '--fisher', file, '--damping', String(damping), '--json');
    expect(stats.code, stats.stderr).toBe(0);
    const st = JSON.parse(stats.stdout) as { trace: number; logdet: number; frobeniusNorm: number; topEigenvalue: number };
    expect(st.trace).toBeCloseTo(F.trace(), 10);
    expect(st.logdet).toBeCloseTo(F.logdet({ damping }), 8);
    expect(st.frobeniusNorm).toBeCloseTo(F.frobeniusNorm(), 10);
    expect(st.topEigenvalue).toBeCloseTo(F.eig({ k: 1 }).values[0]!, 8);
    const human = await fisher('stats', '--fisher', file);
    expect(human.stdout).toMatch(/trace\s+\S+/);
    const ewc = await fisher('ewc-penalty', '--fisher', file, '--weights', 'g.safetensors', '--anchor', 'ex/weights.safetensors', '--lambda', '4', '--json');
    expect(ewc.code, ewc.stderr).toBe(0);
    const theta = (await readParameterVector(at('ex/weights.safetensors'), F.layout)).values;
    expect((JSON.parse(ewc.stdout) as { penalty: number }).penalty).toBeCloseTo(F.ewcPenalty(g, theta, 4), 8);
  });

  it('merge-models: a parameter one Fisher does not weigh comes from the other model exactly', async () => {
    const F = await loadFisher(at('op-kfac.safetensors'));
    const d = F.diagonal();
    // Two diagonal Fishers: the first zero on the first layer, the second positive everywhere.
    const zeroFirst = d.map((x, i) => (i < F.layout.layers[0]!.size ? 0 : x));
    const header = { format: 'fisher-gpu/1', kind: 'empirical', structure: 'diag', reduction: 'mean', n: '10', samples: '1', seed: 'none', backend: 'test', parameters: JSON.stringify(F.layout.entries.map((e) => ({ name: e.name, shape: e.shape }))) };
    await writeSafetensors(at('fa.safetensors'), parameterTensors(F.layout, zeroFirst, 'F64'), header);
    await writeSafetensors(at('fb.safetensors'), parameterTensors(F.layout, d, 'F64'), header);
    const a = Float64Array.from(new Rng(8).normals(p));
    const b = Float64Array.from(new Rng(9).normals(p));
    await writeSafetensors(at('a.safetensors'), parameterTensors(F.layout, a));
    await writeSafetensors(at('b.safetensors'), parameterTensors(F.layout, b));
    const r = await fisher('merge-models', '--weights', 'a.safetensors', 'b.safetensors', '--fisher', 'fa.safetensors', 'fb.safetensors', '--out', 'merged-model.safetensors');
    expect(r.code, r.stderr).toBe(0);
    const merged = (await readParameterVector(at('merged-model.safetensors'), F.layout)).values;
    const b32 = Float32Array.from(b);
    const a32 = Float32Array.from(a);
    for (let i = 0; i < F.layout.layers[0]!.size; i++) expect(merged[i]).toBe(b32[i]);
    // Elsewhere both weigh equally: the mean.
    for (let i = F.layout.layers[0]!.size; i < p; i++) expect(merged[i]).toBeCloseTo((a32[i]! + b32[i]!) / 2, 6);
  });

  it('one-line errors: mismatched parameters, a method the structure lacks, negative damping, different structures', async () => {
    await writeSafetensors(at('short.safetensors'), [['fc1.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) }]]);
    const cases: [string[], RegExp, number][] = [
      [['mv', '--fisher', 'op-kfac.safetensors', '--vector', 'short.safetensors', '--out', 'bad.safetensors'], /short\.safetensors: (the vector has no tensor|tensor "fc1\.weight" is \[1\])/, 1],
      [['solve', '--fisher', 'op-block.safetensors', '--vector', 'g.safetensors', '--method', 'factored', '--damping', '1', '--out', 'bad.safetensors'], /π-damping/, 1],
      [['solve', '--fisher', 'op-kfac.safetensors', '--vector', 'g.safetensors', '--damping', '-1', '--out', 'bad.safetensors'], /must be a non-negative number/, 2],
      [['solve', '--fisher', 'op-kfac.safetensors', '--vector', 'g.safetensors', '--backend', 'gpu', '--out', 'bad.safetensors'], /--backend gpu factors full and block Fishers/, 1],
      [['merge', 'op-kfac.safetensors', 'op-block.safetensors', '--out', 'bad.safetensors'], /structures differ: kfac and block/, 1],
      [['merge', 'op-lowrank.safetensors', 'op-lowrank.safetensors', '--out', 'bad.safetensors'], /do not merge/, 1],
      [['stats', '--fisher', 'g.safetensors'], /not a fisher-gpu Fisher file/, 1],
    ];
    for (const [args, message, code] of cases) {
      const r = await fisher(...args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(ours(r.stderr).join('\n'), args.join(' ')).toMatch(message);
      if (code === 1) expect(ours(r.stderr)).toHaveLength(1);
    }
    expect((await readdir(dir)).filter((f) => f.startsWith('bad'))).toEqual([]);
    for (const command of ['mv', 'solve', 'eig', 'stats', 'merge', 'merge-models', 'ewc-penalty']) {
      const help = await fisher(command, '--help');
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/Usage: fisher/);
    }
  });
});

describe('Fishers from what callers have', () => {
  it('gradients: a file of per-sample gradients gives the Fisher compute gives, named by the model', async () => {
    const model = await Network.load(at('ex/model.json'), at('ex/weights.safetensors'));
    const data = await Dataset.load(at('ex/data.safetensors'), model);
    const loaded = await new CpuEngine().load(model);
    const g = Float32Array.from(await loaded.gradients(data, DATA_LABELS));
    loaded.release();
    await writeSafetensors(at('g.grad.safetensors'), [['g', { dtype: 'F32', shape: [data.n, model.parameterCount], data: g }]]);
    for (const structure of ['diag', 'full', 'block']) {
      const r = await fisher('gradients', '--in', 'g.grad.safetensors', '--structure', structure, '--model', 'ex/model.json', '--chunk', '50', '--out', `fg-${structure}.safetensors`);
      expect(r.code, r.stderr).toBe(0);
      const c = await fisher('compute', ...inputs, '--structure', structure, '--backend', 'cpu', '--out', `fc-${structure}.safetensors`, '--quiet');
      expect(c.code, c.stderr).toBe(0);
      const [a, b] = await Promise.all([loadFisher(at(`fg-${structure}.safetensors`)), loadFisher(at(`fc-${structure}.safetensors`))]);
      expect([...a.tensors().keys()]).toEqual([...b.tensors().keys()]);
      expectRelativeError(a.toDense(), b.toDense(), 1e-6, `gradients ${structure}`);
    }
    const low = await fisher('gradients', '--in', 'g.grad.safetensors', '--structure', 'lowrank', '--rank', '4', '--out', 'fg-lowrank.safetensors');
    expect(low.code, low.stderr).toBe(0);
    expect((await loadFisher(at('fg-lowrank.safetensors'))).info.lowrank?.rank).toBe(4);
  });

  it('forecast: a straight-line fit gives its closed-form errors', async () => {
    const t = Array.from({ length: 12 }, (_, i) => i / 2);
    await writeSafetensors(at('J.safetensors'), [['J', { dtype: 'F64', shape: [12, 1, 2], data: Float64Array.from(t.flatMap((x) => [1, x])) }]]);
    await writeSafetensors(at('sigma.safetensors'), [['sigma', { dtype: 'F64', shape: [1], data: Float64Array.from([0.3]) }]]);
    const r = await fisher('forecast', '--jacobian', 'J.safetensors', '--noise', 'sigma.safetensors', '--out', 'forecast.safetensors', '--json');
    expect(r.code, r.stderr).toBe(0);
    const { marginalErrors, conditionalErrors } = JSON.parse(r.stdout) as { marginalErrors: number[]; conditionalErrors: number[] };
    const [n, st, stt] = [12, t.reduce((s, x) => s + x, 0), t.reduce((s, x) => s + x * x, 0)];
    const det = n * stt - st * st;
    expectClose(marginalErrors, [0.3 * Math.sqrt(stt / det), 0.3 * Math.sqrt(n / det)], { rtol: 1e-12 }, 'marginalised');
    expectClose(conditionalErrors, [0.3 / Math.sqrt(n), 0.3 / Math.sqrt(stt)], { rtol: 1e-12 }, 'conditional');
    // The file is a Fisher file: every operation reads it.
    const stats = await fisher('stats', '--fisher', 'forecast.safetensors', '--json');
    expect(stats.code, stats.stderr).toBe(0);
    expect((JSON.parse(stats.stdout) as { trace: number }).trace).toBeCloseTo((n + stt) / 0.09, 3);
    const bad = await fisher('forecast', '--jacobian', 'J.safetensors', '--noise', 'g.safetensors', '--out', 'bad.safetensors');
    expect(bad.code).toBe(1);
    expect(ours(bad.stderr)).toHaveLength(1);
  });
});
