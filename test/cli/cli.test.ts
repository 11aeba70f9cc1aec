/**
 * The `fisher` command end to end: a private build of dist/cli.js, run as a
 * user would, in a temporary directory.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { expectClose, expectRelativeError } from '../helpers/compare.js';
// @ts-expect-error: a plain ES module of the build, without declarations
import { buildAll } from '../../tools/build.mjs';

const run = promisify(execFile);
let dir = '';
let buildDir = '';
let cli = '';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function fisher(...args: string[]): Promise<Result> {
  return fisherWith({}, ...args);
}

async function fisherWith(env: Record<string, string>, ...args: string[]): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { cwd: dir, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** Dawn's own notices on stderr are not ours; what is left must be our one line. */
function ours(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l && !l.startsWith('Warning: '));
}

function hasPython(): boolean {
  try {
    execFileSync('python3', ['--version']);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  await mkdir(join(__dirname, '../../node_modules/.cache'), { recursive: true });
  dir = await mkdtemp(join(tmpdir(), 'fisher-cli-'));
  // The build must sit under the project to find its node_modules: a private copy in node_modules/.cache.
  buildDir = await mkdtemp(join(__dirname, '../../node_modules/.cache/fisher-cli-build-'));
  await buildAll({ declarations: false, outDir: buildDir });
  cli = join(buildDir, 'cli.js');
  const made = await fisher('example', '--out-dir', 'ex', '--widths', '9,7,4', '--samples', '300', '--seed', '3');
  expect(made.code, made.stderr).toBe(0);
  const cnn = await fisher('example', '--arch', 'cnn', '--out-dir', 'cnn', '--samples', '12', '--seed', '4');
  expect(cnn.code, cnn.stderr).toBe(0);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(buildDir, { recursive: true, force: true });
});

const files = ['--model', 'ex/model.json', '--weights', 'ex/weights.safetensors', '--data', 'ex/data.safetensors'];

describe('fisher', () => {
  it.each([[], ['compute'], ['info'], ['demo'], ['example'], ['bench']])('%s --help', async (...cmd) => {
    const r = await fisher(...cmd, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: fisher/);
  });

  it('computes the diagonal on the GPU, equal to the CPU path, in a file an independent reader reads', async () => {
    const r = await fisher('compute', ...files, '--structure', 'diag', '--out', 'diag.safetensors');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote diag.safetensors: empirical diag Fisher, N = 300, P = 102/);
    const c = await fisher('compute', ...files, '--backend', 'cpu', '--out', 'diag-cpu.safetensors', '--quiet');
    expect(c.code, c.stderr).toBe(0);
    const [gpu, cpu] = [await readSafetensors(join(dir, 'diag.safetensors')), await readSafetensors(join(dir, 'diag-cpu.safetensors'))];
    expect(gpu.metadata).toMatchObject({ kind: 'empirical', structure: 'diag', n: '300', backend: 'gpu' });
    expect(cpu.metadata).toMatchObject({ backend: 'cpu' });
    for (const [name, t] of gpu.tensors) expectRelativeError(t.data as Float32Array, cpu.tensors.get(name)!.data as Float32Array, 1e-5, name);

    if (!hasPython()) return; // The TypeScript reader above has checked the file; python3 is the independent one where present.
    const py = JSON.parse(execFileSync('python3', [join(__dirname, '../helpers/read_safetensors.py'), join(dir, 'diag.safetensors')], { encoding: 'utf8' }));
    expect(py.metadata).toEqual(gpu.metadata);
    expect(Object.keys(py.tensors)).toEqual(['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    for (const [name, t] of gpu.tensors) {
      expect(py.tensors[name].shape).toEqual(t.shape);
      expectClose(py.tensors[name].values, t.data as Float32Array, { rtol: 0 }, `${name} read by Python`);
    }
  });

  it('example --arch cnn and resnet: the diagonal on the GPU equals the CPU path, tensors named as PyTorch names them', async () => {
    const cnnFiles = ['--model', 'cnn/model.json', '--weights', 'cnn/weights.safetensors', '--data', 'cnn/data.safetensors'];
    expect((await fisher('compute', ...cnnFiles, '--out', 'cnn-gpu.safetensors', '--quiet')).code).toBe(0);
    expect((await fisher('compute', ...cnnFiles, '--backend', 'cpu', '--out', 'cnn-cpu.safetensors', '--quiet')).code).toBe(0);
    const [g, c] = [await readSafetensors(join(dir, 'cnn-gpu.safetensors')), await readSafetensors(join(dir, 'cnn-cpu.safetensors'))];
    expect([...g.tensors.keys()]).toEqual(['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias', 'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    expect(g.tensors.get('conv2.weight')!.shape).toEqual([16, 6, 5, 5]);
    for (const [name, t] of g.tensors) expectRelativeError(t.data as Float32Array, c.tensors.get(name)!.data as Float32Array, 1e-5, name);
    const data = await readSafetensors(join(dir, 'cnn', 'data.safetensors'));
    expect(data.tensors.get('x')!.shape).toEqual([12, 1, 28, 28]);
    const r = await fisher('example', '--arch', 'resnet', '--out-dir', 'resnet', '--samples', '3');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/P = 43978, N = 3/);
    const f = await fisher('compute', '--model', 'resnet/model.json', '--weights', 'resnet/weights.safetensors', '--data', 'resnet/data.safetensors', '--out', 'resnet.safetensors');
    expect(f.code, f.stderr).toBe(0);
    expect((await readSafetensors(join(dir, 'resnet.safetensors'))).tensors.get('block4.norm.weight')!.shape).toEqual([16, 14, 14]);
  });

  it('computes the mc Fisher with a seed, the same on the GPU and the CPU, and records M and the seed', async () => {
    const args = ['compute', ...files, '--kind', 'mc', '--samples', '2', '--seed', '9', '--quiet'];
    expect((await fisher(...args, '--out', 'mc.safetensors')).code).toBe(0);
    expect((await fisher(...args, '--backend', 'cpu', '--out', 'mc-cpu.safetensors')).code).toBe(0);
    const [g, c] = [await readSafetensors(join(dir, 'mc.safetensors')), await readSafetensors(join(dir, 'mc-cpu.safetensors'))];
    expect(g.metadata).toMatchObject({ kind: 'mc', samples: '2', seed: '9' });
    for (const [name, t] of g.tensors) expectRelativeError(t.data as Float32Array, c.tensors.get(name)!.data as Float32Array, 1e-5, name);
  });

  it('computes the full matrix with a batch size and a sum reduction', async () => {
    const r = await fisher('compute', ...files, '--structure', 'full', '--batch-size', '7', '--reduction', 'sum', '--dtype', 'F64', '--out', 'full.safetensors');
    expect(r.code, r.stderr).toBe(0);
    const f = await readSafetensors(join(dir, 'full.safetensors'));
    expect(f.tensors.get('fisher')).toMatchObject({ dtype: 'F64', shape: [102, 102] });
    expect(f.metadata).toMatchObject({ structure: 'full', reduction: 'sum' });
  });

  it('computes block, kfac (expand and reduce), ekfac and lowrank on the GPU, equal to the CPU path, with their tensors and metadata', async () => {
    const cnnFiles = ['--model', 'cnn/model.json', '--weights', 'cnn/weights.safetensors', '--data', 'cnn/data.safetensors'];
    const runs: [string[], string, string[]][] = [
      [files, 'block', ['--structure', 'block']],
      [files, 'kfac', ['--structure', 'kfac', '--kind', 'exact']],
      [cnnFiles, 'cnn-kfac', ['--structure', 'kfac', '--kfac', 'reduce']],
      [files, 'ekfac', ['--structure', 'ekfac', '--kind', 'mc', '--seed', '3']],
      [files, 'lowrank', ['--structure', 'lowrank', '--rank', '5']],
    ];
    for (const [input, name, args] of runs) {
      for (const backend of ['gpu', 'cpu']) {
        const r = await fisher('compute', ...input, ...args, '--backend', backend, '--quiet', '--out', `${name}-${backend}.safetensors`);
        expect(r.code, r.stderr).toBe(0);
      }
      const [g, c] = [await readSafetensors(join(dir, `${name}-gpu.safetensors`)), await readSafetensors(join(dir, `${name}-cpu.safetensors`))];
      expect([...g.tensors.keys()]).toEqual([...c.tensors.keys()]);
      // Eigenvectors are defined up to sign: they are compared through their eigenvalues here (the library tests compare the matrices).
      for (const [t, v] of g.tensors) if (!/(\.Q[AG]|^eigenvectors)$/.test(t)) expectRelativeError(v.data as Float32Array, c.tensors.get(t)!.data as Float32Array, 1e-4, `${name}: ${t}`);
    }
    const block = await readSafetensors(join(dir, 'block-gpu.safetensors'));
    expect([...block.tensors].map(([k, t]) => [k, t.shape])).toEqual([['fc1.block', [70, 70]], ['fc2.block', [32, 32]]]);
    expect(block.metadata).toMatchObject({ structure: 'block' });
    const kfac = await readSafetensors(join(dir, 'kfac-gpu.safetensors'));
    expect([...kfac.tensors].map(([k, t]) => [k, t.shape])).toEqual([['fc1.A', [10, 10]], ['fc1.G', [7, 7]], ['fc2.A', [8, 8]], ['fc2.G', [4, 4]]]);
    expect(kfac.metadata).toMatchObject({ structure: 'kfac', kind: 'exact', kfac: 'expand' });
    const cnn = await readSafetensors(join(dir, 'cnn-kfac-gpu.safetensors'));
    // conv1: 1 channel, 5×5 kernel, bias: A is [26, 26]; G over its 6 output channels.
    expect(cnn.tensors.get('conv1.A')!.shape).toEqual([26, 26]);
    expect(cnn.tensors.get('conv1.G')!.shape).toEqual([6, 6]);
    expect(cnn.metadata).toMatchObject({ kfac: 'reduce' });
    const ekfac = await readSafetensors(join(dir, 'ekfac-gpu.safetensors'));
    expect([...ekfac.tensors].map(([k, t]) => [k, t.shape])).toEqual([
      ['fc1.QA', [10, 10]],
      ['fc1.QG', [7, 7]],
      ['fc1.eigenvalues', [7, 10]],
      ['fc2.QA', [8, 8]],
      ['fc2.QG', [4, 4]],
      ['fc2.eigenvalues', [4, 8]],
    ]);
    expect(ekfac.metadata).toMatchObject({ structure: 'ekfac', kind: 'mc', seed: '3', kfac: 'expand' });
    const lowrank = await readSafetensors(join(dir, 'lowrank-gpu.safetensors'));
    expect([...lowrank.tensors].map(([k, t]) => [k, t.shape])).toEqual([['eigenvalues', [5]], ['eigenvectors', [5, 102]]]);
    expect(lowrank.metadata).toMatchObject({ structure: 'lowrank', rank: '5', converged: 'true' });
  });

  it('plan: a table of every structure with the bytes it needs, a mark on those that fit, and why', async () => {
    const r = await fisher('plan', '--model', 'cnn/model.json', '--data', 'cnn/data.safetensors', '--structure', 'kfac');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^model: P = 51902, data: N = 12; empirical;/m);
    expect(r.stdout).toMatch(/^diag\s+✓\s+\d+\s+[\d.]+ MiB\s+[\d.]+ (KiB|MiB)$/m);
    // Beyond host memory, block goes to the output file tile by tile.
    expect(r.stdout).toMatch(/^block\s+✓/m);
    expect(r.stdout).toMatch(/^block:\n {2}disk: the result \([\d.]+ GiB as float32\) goes into the output file tile by tile, \d+ passes over the data$/m);
    expect(r.stdout).toMatch(/^kfac ←\s+✓/m);
    expect(r.stdout).toMatch(/^kfac:\n {2}device \(kfac pass\): [\d.]+ [KM]iB fixed \+ [\d.]+ KiB per sample; batch \d+, set by/m);
    // A budget that leaves only the small structures, and a batch set by it.
    const tight = await fisher('plan', '--model', 'cnn/model.json', '--memory-budget', '8M');
    expect(tight.code, tight.stderr).toBe(0);
    expect(tight.stdout).toMatch(/^budget: device 8.00 MiB, host 8.00 MiB, disk [\d.]+ [KMGT]iB free here$/m);
    expect(tight.stdout).toMatch(/^lowrank\s+✗/m);
    expect(tight.stdout).toMatch(/set by the 8.00 MiB budget/);
  });

  it('demo: EWC on permuted MNIST, with the table on stdout and the JSON record and plot written', async () => {
    const r = await fisher('demo', '--tasks', '2', '--epochs', '1', '--hidden', '16', '--out-dir', 'ewc', '--quiet');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/EWC on permuted MNIST \(2 tasks, MLP 784-16-10\)/);
    expect(r.stdout).toMatch(/none\s+task 1\s+\d+\.\d%/);
    expect(r.stdout).toMatch(/\s+task 2\s+\d+\.\d%\s+\d+\.\d%\s+\d+\.\d%/);
    const json = JSON.parse(await readFile(join(dir, 'ewc', 'results.json'), 'utf8'));
    for (const m of ['none', 'l2', 'ewc']) expect(json.accuracy[m].map((row: number[]) => row.length)).toEqual([1, 2]);
    expect(json.settings).toMatchObject({ tasks: 2, epochs: 1, hidden: [16], fisherKind: 'empirical' });
    expect(json.seconds.total).toBeGreaterThan(0);
    expect(await readFile(join(dir, 'ewc', 'accuracy.svg'), 'utf8')).toMatch(/^<svg/);
    // EWC with a K-FAC Fisher, online: recorded in the settings and said in the header.
    const k = await fisher('demo', '--tasks', '2', '--epochs', '1', '--hidden', '16', '--methods', 'ewc', '--structure', 'kfac', '--online', '0.5', '--out-dir', 'ewc-kfac', '--quiet');
    expect(k.code, k.stderr).toBe(0);
    expect(k.stdout).toMatch(/EWC with a kfac Fisher, online γ = 0\.5/);
    expect(k.stdout).toMatch(/ewc\s+task 1\s+\d+\.\d%\s+\S+\s+task 2\s+\d+\.\d%\s+\d+\.\d%/);
    expect(JSON.parse(await readFile(join(dir, 'ewc-kfac', 'results.json'), 'utf8')).settings).toMatchObject({ fisherStructure: 'kfac', online: 0.5 });
  });

  it('bench --quick: a smoke test of the benchmark (its numbers are not asserted)', async () => {
    const r = await fisher('bench', '--quick', '--json', 'bench/report.json', '--plot', 'bench/roofline.svg');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/peaks: [\d.]+ GFLOP\/s \(vec4 FMA\), [\d.]+ GB\/s \(copy\)/);
    expect(r.stdout).toMatch(/empirical diag 784-100-10 N=1,000/);
    const report = JSON.parse(await readFile(join(dir, 'bench', 'report.json'), 'utf8'));
    expect(report.rows.length).toBeGreaterThanOrEqual(4);
    for (const row of report.rows) expect(row.ours.wall).toBeGreaterThan(0);
    expect(report.rows.some((row: { peers: unknown[] }) => row.peers.length > 0)).toBe(true);
    expect(await readFile(join(dir, 'bench', 'roofline.svg'), 'utf8')).toMatch(/^<svg/);
  });

  it('bench --whole-process: fisher compute of the issue\'s workload timed as whole processes; --runs sets how many count', async () => {
    const r = await fisher('bench', '--quick', '--filter', 'no-such-workload', '--whole-process', '--runs', '2', '--json', 'bench/whole.json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/whole process, fisher compute \(diag empirical 784-256-256-10 N=10,000\): first run [\d.]+ s, then [\d.]+ s \(median of 2\)/);
    const report = JSON.parse(await readFile(join(dir, 'bench', 'whole.json'), 'utf8'));
    expect(report.wholeProcess.runs).toHaveLength(3);
    expect(report.wholeProcess.median).toBeGreaterThan(0);
    const alone = await fisher('bench', '--quick', '--filter', 'no-such-workload', '--runs', '2');
    expect(alone.code).not.toBe(0);
    expect(alone.stderr).toMatch(/--runs counts the runs of --whole-process/);
  });

  // The JavaScript peers are installed by the first `fisher bench` (bench/peers); a fresh clone has none.
  const peersInstalled = existsSync(join(__dirname, '../../bench/peers/node_modules/@jax-js/jax')) && existsSync(join(__dirname, '../../bench/peers/node_modules/@tensorflow/tfjs-backend-webgpu'));
  it.skipIf(!peersInstalled).each(['jax-wasm', 'tfjs-webgpu'])('peer-process.js %s: the peer\'s whole process writes the diagonal fisher compute writes (needs bench/peers installed)', async (peer) => {
    const ours = await fisher('compute', ...files, '--structure', 'diag', '--out', `ours-${peer}.safetensors`, '--quiet');
    expect(ours.code, ours.stderr).toBe(0);
    const { stdout } = await run(process.execPath, [join(buildDir, 'peer-process.js'), peer, 'ex/model.json', 'ex/weights.safetensors', 'ex/data.safetensors', `${peer}.safetensors`], { cwd: dir });
    const { phases } = JSON.parse(stdout) as { phases: [string, number][] };
    expect(phases.map(([name]) => name)).toEqual(['start-up', 'reading', 'loading the library', 'computing', 'writing']);
    for (const [name, seconds] of phases) expect(seconds, name).toBeGreaterThan(0);
    const [mine, theirs] = [await readSafetensors(join(dir, `ours-${peer}.safetensors`)), await readSafetensors(join(dir, `${peer}.safetensors`))];
    const flat = Float32Array.from([...mine.tensors.values()].flatMap((t) => Array.from(t.data as Float32Array)));
    expectRelativeError(theirs.tensors.get('diag')!.data as Float32Array, flat, 1e-5, peer);
  });

  it('compute --profile: where the whole process went; the first use of an adapter searches once and says so; --no-tune skips it', async () => {
    const r = await fisher('compute', ...files, '--out', 'profiled.safetensors', '--profile');
    expect(r.code, r.stderr).toBe(0);
    for (const phase of ['profile of the whole process', 'start-up: Node and the modules', 'reading the data', 'opening the device', 'computing', 'the passes on the device', 'writing the output']) expect(r.stderr).toContain(phase);
    // The passes split by kernel entry point, under them: the forward product among them.
    expect(r.stderr).toMatch(/^ {4}matmul[\w/]*\.linear_forward \(\d+ dispatch(es)?\) +\d+\.\d{3} s/m);
    // Each phase with the page faults taken in it, and their total; none on the kernels' lines.
    expect(r.stderr).toMatch(/^computing +\d+\.\d{3} s +[\d.]+% +[\d,]+ page faults$/m);
    const total = /profile of the whole process \([\d.]+ s, ([\d,]+) page faults\)/.exec(r.stderr);
    const phases = [...r.stderr.matchAll(/^\S.*% +([\d,]+) page faults$/gm)].map((m) => Number(m[1]!.replaceAll(',', '')));
    expect(Number(total![1]!.replaceAll(',', ''))).toBe(phases.reduce((a, b) => a + b, 0));
    expect(phases.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(r.stderr).not.toMatch(/^ {4}matmul.*page faults$/m);
    // The tests turn tuning off; with it on and an empty cache of its own, the first run searches.
    const cache = { FISHER_GPU_TUNING: 'on', FISHER_GPU_CACHE_DIR: join(dir, 'first-use-cache') };
    const first = await fisherWith(cache, 'compute', ...files, '--out', 'first.safetensors');
    expect(first.code, first.stderr).toBe(0);
    expect(ours(first.stderr)).toEqual([expect.stringMatching(/^fisher: first use of .*: chose .* for the matrix kernels .* cached in .*first-use-cache\/tuning\.json/)]);
    const second = await fisherWith(cache, 'compute', ...files, '--out', 'second.safetensors');
    expect(ours(second.stderr)).toEqual([]);
    // --no-tune on another empty cache: no search, nothing cached (last: its kind's default shape compiles
    // the pipelines the search's winner did, on lavapipe the same shape, so a fresh machine compiles them once).
    const untunedCache = join(dir, 'untuned-cache');
    const skipped = await fisherWith({ ...cache, FISHER_GPU_CACHE_DIR: untunedCache }, 'compute', ...files, '--out', 'untuned.safetensors', '--no-tune');
    expect(skipped.code, skipped.stderr).toBe(0);
    expect(ours(skipped.stderr)).toEqual([]);
    expect(existsSync(join(untunedCache, 'tuning.json'))).toBe(false);
  });

  it('without an adapter: --backend auto falls back to the CPU with a warning, --backend gpu fails with one line', async () => {
    // A Vulkan loader pointed at no driver: Dawn finds no adapter.
    const noGpu = { VK_ICD_FILENAMES: join(dir, 'no-such-icd.json') };
    const auto = await fisherWith(noGpu, 'compute', ...files, '--out', 'fallback.safetensors');
    expect(auto.code, auto.stderr).toBe(0);
    expect(auto.stderr).toMatch(/fisher: warning: no WebGPU adapter found: .*computing on the CPU reference path/);
    expect((await readSafetensors(join(dir, 'fallback.safetensors'))).metadata).toMatchObject({ backend: 'cpu' });
    const gpuOnly = await fisherWith(noGpu, 'compute', ...files, '--backend', 'gpu', '--out', 'never.safetensors');
    expect(gpuOnly.code).toBe(1);
    expect(gpuOnly.stderr).toMatch(/^fisher: error: NoAdapterError: no WebGPU adapter found/m);
    expect(existsSync(join(dir, 'never.safetensors'))).toBe(false);
  });

  it('info names the adapter and its limits', async () => {
    const r = await fisher('info');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/adapter: +\S/);
    expect(r.stdout).toMatch(/maxStorageBufferBindingSize +\d+/);
  });

  describe('bad input: one line, non-zero exit, no output file', () => {
    /** A copy of an example's files, edited, given to `compute`: one line, exit 1, no output file. */
    async function expectRefused(example: string, name: string, edit: (d: string) => Promise<void>, message: RegExp): Promise<void> {
      const d = join(dir, name);
      await rm(d, { recursive: true, force: true });
      await run('cp', ['-r', join(dir, example), d]);
      await edit(d);
      const out = `${name}.safetensors`;
      const r = await fisher('compute', '--model', `${name}/model.json`, '--weights', `${name}/weights.safetensors`, '--data', `${name}/data.safetensors`, '--out', out);
      expect(r.code).toBe(1);
      const lines = ours(r.stderr);
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^fisher: error: /);
      expect(lines[0]).toMatch(message);
      expect(existsSync(join(dir, out))).toBe(false);
    }
    const spec = async (d: string, f: (s: { layers: Record<string, unknown>[] }) => void) => {
      const s = JSON.parse(await readFile(join(d, 'model.json'), 'utf8'));
      f(s);
      await writeFile(join(d, 'model.json'), JSON.stringify(s));
    };
    const tensors = async (d: string, file: string, f: (t: Map<string, import('../../src/io/dtypes.js').Tensor>) => void) => {
      const t = (await readSafetensors(join(d, file))).tensors;
      f(t);
      await writeSafetensors(join(d, file), t);
    };
    const cases: [string, (d: string) => Promise<void>, RegExp][] = [
      ['unknown-layer', (d) => spec(d, (s) => (s.layers[1]!['type'] = 'softsign')), /unknown layer type "softsign"/],
      ['mismatched', (d) => spec(d, (s) => (s.layers[2]!['in'] = 8)), /layers\[2\] linear \("fc2"\): linear takes in = 8 on its input.s last dimension, but its input has shape \[7\]/],
      ['bad-json', (d) => writeFile(join(d, 'model.json'), '{"layers": ['), /model.json: .*JSON/],
      ['missing-weight', (d) => tensors(d, 'weights.safetensors', (t) => t.delete('fc2.bias')), /missing tensor "fc2.bias"/],
      ['f64-weight', (d) => tensors(d, 'weights.safetensors', (t) => t.set('fc1.bias', { dtype: 'F64', shape: [7], data: new Float64Array(7) })), /"fc1.bias" is F64, expected F32/],
      ['wrong-width', (d) => tensors(d, 'data.safetensors', (t) => t.set('x', { dtype: 'F32', shape: [300, 8], data: new Float32Array(2400) })), /"x" has shape \[300, 8\], expected \[N, 9\]/],
      ['label-range', (d) => tensors(d, 'data.safetensors', (t) => ((t.get('y')!.data as Int32Array)[17] = 4)), /index 17: label 4 is not a class in \[0, 4\)/],
      ['nan-input', (d) => tensors(d, 'data.safetensors', (t) => ((t.get('x')!.data as Float32Array)[9 * 5 + 2] = NaN)), /"x" holds NaN at index \[5, 2\]/],
      ['inf-weight', (d) => tensors(d, 'weights.safetensors', (t) => ((t.get('fc2.weight')!.data as Float32Array)[3] = Infinity)), /"fc2.weight" holds Infinity at index \[0, 3\]/],
      [
        'truncated',
        async (d) => {
          const b = await readFile(join(d, 'data.safetensors'));
          await writeFile(join(d, 'data.safetensors'), b.subarray(0, b.length - 10));
        },
        /data.safetensors: tensors cover \d+ data bytes but the file holds \d+/,
      ],
      [
        'header-length',
        async (d) => {
          const b = await readFile(join(d, 'weights.safetensors'));
          b.writeBigUInt64LE(BigInt(b.length), 0);
          await writeFile(join(d, 'weights.safetensors'), b);
        },
        /weights.safetensors: header length \d+ runs past the end/,
      ],
      [
        'overlap',
        async (d) => {
          const b = await readFile(join(d, 'data.safetensors'));
          const n = Number(b.readBigUInt64LE(0));
          const header = JSON.parse(b.subarray(8, 8 + n).toString());
          header.y.data_offsets = [header.y.data_offsets[0] - 4, header.y.data_offsets[1] - 4];
          const text = Buffer.from(JSON.stringify(header).padEnd(n, ' '));
          text.copy(b, 8);
          await writeFile(join(d, 'data.safetensors'), b);
        },
        /overlap or leave a gap/,
      ],
    ];
    // The convolutional example's spec, weights and data, edited (layers: conv1 relu pool conv2 relu pool flatten fc1 relu fc2).
    const cnnCases: [string, (d: string) => Promise<void>, RegExp][] = [
      ['cnn-kernel', (d) => spec(d, (s) => (s.layers[3]!['kernel_size'] = 15)), /layers\[3\] conv2d \("conv2"\): the kernel spans 15 rows \(kernel 15, dilation 1\) but the padded input has 14/],
      ['cnn-groups', (d) => spec(d, (s) => (s.layers[3]!['groups'] = 4)), /"conv2"\): groups = 4 must divide in_channels = 6 and out_channels = 16/],
      ['cnn-stride', (d) => spec(d, (s) => (s.layers[3]!['stride'] = 0)), /"conv2"\): "stride" must be an integer ≥ 1 or a pair \[h, w\] of them, got 0/],
      ['cnn-channels', (d) => spec(d, (s) => (s.layers[3]!['in_channels'] = 5)), /"conv2"\): in_channels = 5 but its input has 6 channels \(\[6, 14, 14\]\)/],
      ['cnn-field', (d) => spec(d, (s) => (s.layers[2]!['ceil_mode'] = true)), /layers\[2\]: unknown field "ceil_mode" for maxpool2d \(known: type, kernel_size, stride, padding\)/],
      ['cnn-not-flat', (d) => spec(d, (s) => s.layers.splice(6, 4)), /the last layer gives \[16, 5, 5\] per sample; the likelihood needs a flat output/],
      [
        'cnn-residual',
        (d) => spec(d, (s) => s.layers.splice(3, 0, { type: 'residual', layers: [{ type: 'conv2d', name: 'r', in_channels: 6, out_channels: 6, kernel_size: 3 }] })),
        /layers\[3\] residual: a residual block's layers must give back their input's shape \[6, 14, 14\], they give \[6, 12, 12\]/,
      ],
      [
        'cnn-weight-shape',
        (d) => tensors(d, 'weights.safetensors', (t) => t.set('conv2.weight', { dtype: 'F32', shape: [16, 6, 3, 3], data: new Float32Array(16 * 6 * 9) })),
        /"conv2.weight" has shape \[16, 6, 3, 3\], expected \[16, 6, 5, 5\]/,
      ],
      [
        'cnn-data-shape',
        (d) => tensors(d, 'data.safetensors', (t) => t.set('x', { dtype: 'F32', shape: [12, 1, 27, 29], data: new Float32Array(12 * 27 * 29) })),
        /"x" has shape \[12, 1, 27, 29\], expected \[N, 1, 28, 28\] or \[N, 784\]/,
      ],
    ];
    it.each(cnnCases)('%s', (name, edit, message) => expectRefused('cnn', name, edit, message));

    it.each(cases)('%s', (name, edit, message) => expectRefused('ex', name, edit, message));

    it('an output directory that does not exist, before any work', async () => {
      const r = await fisher('compute', ...files, '--out', 'no/such/dir/f.safetensors');
      expect(r.code).toBe(1);
      expect(ours(r.stderr)).toEqual([expect.stringMatching(/^fisher: error: --out no\/such\/dir\/f.safetensors: directory .* does not exist/)]);
    });

    it('a memory budget below what a batch of one needs, with the bytes, before any work', async () => {
      const r = await fisher('compute', ...files, '--memory-budget', '512', '--out', 'budget.safetensors');
      expect(r.code).toBe(1);
      expect(ours(r.stderr)).toEqual([
        expect.stringMatching(/^fisher: error: structure "diag" does not fit: host: its sums and result take [\d.]+ KiB, more than the 512 B available; device \(diag pass\): a batch of one needs [\d.]+ (?:B|KiB) \([\d.]+ (?:B|KiB) fixed, [\d.]+ (?:B|KiB) per sample\), more than the 512 B budget; no structure fits this budget$/),
      ]);
      expect(existsSync(join(dir, 'budget.safetensors'))).toBe(false);
      expect((await fisher('compute', ...files, '--memory-budget', 'lots', '--out', 'x.safetensors')).code).toBe(2);
    });

    it('--rank with a structure other than lowrank', async () => {
      const r = await fisher('compute', ...files, '--rank', '4', '--out', 'x.safetensors');
      expect(r.code).toBe(1);
      expect(ours(r.stderr)).toEqual([expect.stringMatching(/rank applies to structure "lowrank" only \(structure is "diag"\)/)]);
    });

    it('--kfac with a structure other than kfac', async () => {
      const r = await fisher('compute', ...files, '--kfac', 'reduce', '--out', 'x.safetensors');
      expect(r.code).toBe(1);
      expect(ours(r.stderr)).toEqual([expect.stringMatching(/kfac applies to structures "kfac" and "ekfac" only \(structure is "diag"\)/)]);
    });

    it('a block Fisher too large for the host, before any work, naming the largest block', async () => {
      const cnnFiles = ['--model', 'cnn/model.json', '--weights', 'cnn/weights.safetensors', '--data', 'cnn/data.safetensors'];
      // Float64 output: no writing it to the file tile by tile (that is float32).
      const r = await fisher('compute', ...cnnFiles, '--structure', 'block', '--dtype', 'F64', '--out', 'cnn-block.safetensors');
      expect(r.code).toBe(1);
      expect(ours(r.stderr)).toEqual([expect.stringMatching(/the block Fisher has 2\.\d+e\+9 entries .* the largest block, fc1, has P_l = 48120\), more than .* give a float32 output file to write it to tile by tile, or use structure "diag" or "kfac"/)]);
      expect(existsSync(join(dir, 'cnn-block.safetensors'))).toBe(false);
    });

    it('samples with a kind other than mc', async () => {
      const r = await fisher('compute', ...files, '--kind', 'exact', '--samples', '3', '--out', 'x.safetensors');
      expect(r.code).toBe(1);
      expect(ours(r.stderr)).toEqual([expect.stringMatching(/samples applies to kind "mc" only/)]);
    });

    it('training that diverges is one line naming the epoch, not an internal error', async () => {
      const r = await fisher('demo', '--tasks', '1', '--epochs', '1', '--hidden', '8', '--optimizer', 'sgd', '--lr', '1e30', '--methods', 'none', '--out-dir', 'diverged', '--quiet');
      expect(r.code).toBe(1);
      expect(ours(r.stderr)).toEqual([expect.stringMatching(/^fisher: error: training diverged in epoch 1: θ\[\d+\] is (NaN|-?Infinity); lower the learning rate/)]);
    });

    it('usage errors exit 2', async () => {
      expect((await fisher('compute', ...files, '--out', 'x.safetensors', '--structure', 'banded')).code).toBe(2);
      expect((await fisher('compute', ...files, '--out', 'x.safetensors', '--batch-size', '0')).code).toBe(2);
      expect((await fisher('nonsense')).code).toBe(2);
    });

    it('left no temporary files behind', async () => {
      const names = await readdir(dir);
      expect(names.filter((n) => n.endsWith('.tmp'))).toEqual([]);
    });
  });
});
