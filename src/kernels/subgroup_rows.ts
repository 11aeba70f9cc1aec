/**
 * shaders/subgroup_rows.wgsl: whether the device forms the subgroups of a
 * workgroup shape as its rows, which the subgroup core of matmul needs and
 * WGSL does not promise. Asked once per shape and adapter: the answer is
 * kept for the device, and in the cache directory by the adapter's key,
 * which names its driver and version (a dispatch and a read-back less at
 * every start: 60–70 ms on lavapipe, bench/RESULTS.md, issue 12's sixth
 * part).
 */
import { adapterKey, readCached, writeCached } from '../gpu/cache-dir.js';
import type { GpuDevice } from '../gpu/device.js';
import source from '../../shaders/subgroup_rows.wgsl';

/** The cache directory's file of answers: { "<adapter key> | <wgM>x<wgN>": { rows: true } or { rows: false, problem } }. */
const ANSWERS_FILE = 'subgroup-rows.json';

/** Per device, the answer by workgroup shape (from the cache directory, else one dispatch). */
const answers = new WeakMap<GpuDevice, Map<string, Promise<string | undefined>>>();

/** The answers' key: the workgroup shape. */
function shapeKey(wgM: number, wgN: number): string {
  return `${wgM}x${wgN}`;
}

function answersOf(gpu: GpuDevice): Map<string, Promise<string | undefined>> {
  let byShape = answers.get(gpu);
  if (!byShape) answers.set(gpu, (byShape = new Map()));
  return byShape;
}

/**
 * Whether the device forms the subgroups of a `wgM` × `wgN` workgroup
 * (wgN invocations a row) as its rows: undefined if it does, else why not.
 */
export function subgroupRowsProblem(gpu: GpuDevice, wgM: number, wgN: number): Promise<string | undefined> {
  const byShape = answersOf(gpu);
  const key = shapeKey(wgM, wgN);
  let answer = byShape.get(key);
  if (!answer) byShape.set(key, (answer = ask(gpu, wgM, wgN)));
  return answer;
}

/**
 * @internal For tests: sets the answer for a workgroup shape on `gpu` as if
 * the device had given it (undefined: it passed), or with `forget`, drops
 * it so that the next use asks again (the cache directory, then the
 * device).
 */
export function setSubgroupRowsAnswer(gpu: GpuDevice, wgM: number, wgN: number, answer: string | undefined, forget = false): void {
  const key = shapeKey(wgM, wgN);
  if (forget) answersOf(gpu).delete(key);
  else answersOf(gpu).set(key, Promise.resolve(answer));
}

/** The answer kept on disk, else the device's (then kept). */
async function ask(gpu: GpuDevice, wgM: number, wgN: number): Promise<string | undefined> {
  const key = `${adapterKey(gpu)} | ${shapeKey(wgM, wgN)}`;
  const kept = storedAnswers()[key];
  if (typeof kept === 'object' && kept !== null && 'rows' in kept) {
    if (kept.rows === true) return undefined;
    if ('problem' in kept && typeof kept.problem === 'string') return kept.problem;
  }
  const answer = await askDevice(gpu, wgM, wgN);
  writeCached(ANSWERS_FILE, { ...storedAnswers(), [key]: answer === undefined ? { rows: true } : { rows: false, problem: answer } });
  return answer;
}

function storedAnswers(): Record<string, unknown> {
  const all = readCached(ANSWERS_FILE);
  return typeof all === 'object' && all !== null && !Array.isArray(all) ? (all as Record<string, unknown>) : {};
}

async function askDevice(gpu: GpuDevice, wgM: number, wgN: number): Promise<string | undefined> {
  const kernel = await gpu.kernel({ family: 'subgroup_rows', source, entry: 'rows', overrides: { WG_M: wgM, WG_N: wgN } });
  const [gx, gy] = [2, 2];
  const count = gx * gy * wgM * wgN;
  const out = await gpu.storage(count * 4, 'subgroup rows');
  try {
    await gpu.step('subgroup rows', (step) => kernel.encode(step, { out }, {}, [gx, gy]));
    const got = await gpu.readF32(out, count * 4);
    const bad = got.findIndex((v) => v !== 1);
    return bad < 0 ? undefined : `the device does not form its subgroups as the rows of a ${wgM}×${wgN} workgroup (invocation ${bad} of ${count} shares its subgroup across rows)`;
  } finally {
    gpu.buffers.release(out);
  }
}
