/**
 * The README's library example, run as a user runs it: the package imported
 * by its name ('fisher-gpu', resolved through its package.json exports to a
 * fresh build), on the files `fisher example --arch cnn` writes. The code is
 * read from README.md itself, so the two cannot drift apart.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the build, without declarations
import { buildAll } from '../../tools/build.mjs';

const run = promisify(execFile);
const root = join(__dirname, '../..');
let dir = '';
let buildDir = '';

/** The ```ts blocks of the README's "## Library" section, in order. */
async function readmeLibraryExamples(): Promise<string[]> {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Library');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const blocks = [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  if (blocks.length === 0) throw new Error('README.md: no ```ts block under "## Library"');
  return blocks;
}
const readmeLibraryExample = async () => (await readmeLibraryExamples())[0]!;

beforeAll(async () => {
  await mkdir(join(root, 'node_modules/.cache'), { recursive: true });
  buildDir = await mkdtemp(join(root, 'node_modules/.cache/fisher-api-build-'));
  await buildAll({ declarations: false, outDir: buildDir });
  dir = await mkdtemp(join(tmpdir(), 'fisher-api-'));
  // An installed package: its package.json, its build, and its dependencies.
  const pkg = join(dir, 'node_modules', 'fisher-gpu');
  await mkdir(pkg, { recursive: true });
  await copyFile(join(root, 'package.json'), join(pkg, 'package.json'));
  await symlink(buildDir, join(pkg, 'dist'));
  await symlink(join(root, 'node_modules'), join(pkg, 'node_modules'));
  await run(process.execPath, [join(buildDir, 'cli.js'), 'example', '--arch', 'cnn', '--out-dir', 'ex', '--samples', '40'], { cwd: dir });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(buildDir, { recursive: true, force: true });
});

describe('the public API', () => {
  it("runs the README's library example, importing 'fisher-gpu' by name", async () => {
    // The example is TypeScript written without type annotations: it runs as a module as it is.
    await writeFile(join(dir, 'example.mjs'), await readmeLibraryExample());
    const { stdout } = await run(process.execPath, ['example.mjs'], { cwd: dir });
    const trace = /trace (\S+) \(float64 reference (\S+), mc (\S+)\)/.exec(stdout);
    expect(trace, stdout).not.toBeNull();
    const [gpuTrace, cpuTrace] = [Number(trace![1]), Number(trace![2])];
    expect(Math.abs(gpuTrace - cpuTrace) / cpuTrace).toBeLessThan(1e-5);
    expect(stdout).toMatch(/accuracy (0|1|0\.\d+)\n/);
    const saved = await readFile(join(dir, 'fisher.safetensors'));
    expect(saved.length).toBeGreaterThan(4 * 51902);
  });

  it("runs the README's operations example: a natural-gradient step, EWC with K-FAC, a log-determinant, shards merged", async () => {
    await writeFile(join(dir, 'operations.mjs'), (await readmeLibraryExamples())[1]!);
    const { stdout } = await run(process.execPath, ['operations.mjs'], { cwd: dir });
    expect(stdout).toMatch(/step's local KL \d\S*; cg: \d+ iterations/);
    expect(stdout).toMatch(/EWC penalty \d\S*/);
    expect(stdout).toMatch(/logdet\(F \+ 1e-3·I\) = -?\d\S*; top eigenvalues \S+, \S+, \S+/);
    const traces = /merged trace (\S+) \(one run (\S+)\)/.exec(stdout);
    expect(traces, stdout).not.toBeNull();
    expect(Math.abs(Number(traces![1]) - Number(traces![2])) / Number(traces![2])).toBeLessThan(1e-5);
  });

  it('exports every name the README shows', async () => {
    const readme = await readFile(join(root, 'README.md'), 'utf8');
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', "import * as m from 'fisher-gpu'; console.log(JSON.stringify(Object.keys(m)))"], { cwd: dir });
    const exported = new Set(JSON.parse(stdout) as string[]);
    const imported = [...readme.matchAll(/import \{([^}]+)\} from 'fisher-gpu'/g)].flatMap((m) => m[1]!.split(',').map((s) => s.trim()));
    for (const name of [...imported, 'GpuEngine', 'parseSpec', 'Network', 'TrainingDivergedError', 'InputError', 'SafetensorsError', 'NoAdapterError']) expect(exported, name).toContain(name);
  });
});
