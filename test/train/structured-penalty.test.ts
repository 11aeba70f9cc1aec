/**
 * EWC penalties of K-FAC and full Fishers on the device (issue: EWC with any
 * structure): one SGD step with the penalty moves θ by −lr·λ F (θ − θ*)
 * beyond the step without it, F multiplied as the Fisher object multiplies
 * (float64, the CPU path), and the GPU's step equals the CPU's. Online EWC
 * keeps the running Fisher as weighted terms at the latest anchor.
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { GpuEngine } from '../../src/engine/gpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import { ewcPenaltyGradient, ewcPenaltyValue, OnlineEwc } from '../../src/fisher/penalty.js';
import type { FisherStructure } from '../../src/fisher/options.js';
import { Rng } from '../../src/model/random.js';
import { caseModel, NETWORK_CASES } from '../helpers/cases.js';
import { expectRelativeError } from '../helpers/compare.js';
import { randomData } from '../helpers/fixtures.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();
const cpu = new CpuEngine();

describe.each([NETWORK_CASES[0]!, NETWORK_CASES[1]!])('device EWC penalties on $name', (c) => {
  const model = caseModel(c, 51);
  const data = randomData(model, c.n, 52);
  const p = model.parameterCount;
  const rng = new Rng(53);
  const theta = model.parameters();
  const star = Float64Array.from(theta, (t) => t + 0.05 * rng.normals(1)[0]!);
  const lr = 0.1;
  const lambda = 3;

  it.each(['diag', 'kfac', 'full'] as FisherStructure[])('%s: one SGD step moves θ by −lr·λ F (θ − θ*) more, on the GPU as on the CPU', async (structure) => {
    const F = await fisher(cpu, model, data, { structure });
    const penalty = ewcPenaltyGradient([{ theta: star, fisher: F, weight: 0.5 }], lambda);
    if (structure === 'kfac') expect(penalty.kronecker?.length).toBeGreaterThan(0);
    if (structure === 'full') expect(penalty.dense?.length).toBe(1);
    const batch = data.slice(0, c.batch);
    const step = async (engine: CpuEngine | GpuEngine, withPenalty: boolean) => {
      const m = await engine.load(model);
      await m.setOptimizer({ type: 'sgd', learningRate: lr }, withPenalty ? penalty : undefined);
      await m.trainStep(batch);
      const out = Float64Array.from(await m.parameters());
      m.release();
      return out;
    };
    const [plain, pulled] = [await step(cpu, false), await step(cpu, true)];
    const moved = pulled.map((x, i) => (x - plain[i]!) / -lr);
    const d = Float64Array.from(theta, (t, i) => t - star[i]!);
    // The device's penalty holds F in float32.
    expectRelativeError(moved, F.mv(d).map((x) => 0.5 * lambda * x), 1e-6, 'λ w F (θ − θ*)');
    const onGpu = await step(new GpuEngine(gpu()), true);
    expectRelativeError(onGpu.map((x, i) => x - theta[i]!), pulled.map((x, i) => x - theta[i]!), 1e-4, 'the GPU step against the CPU step');
    expect(ewcPenaltyValue([{ theta: star, fisher: F, weight: 0.5 }], lambda, theta)).toBeCloseTo(0.25 * lambda * d.reduce((s, x, i) => s + x * F.mv(d)[i]!, 0), 10);
  });

  it('online EWC: the running Fisher γ F̃ + F_t at the latest anchor', async () => {
    const [F1, F2] = [await fisher(cpu, model, data.slice(0, 7), { structure: 'kfac' }), await fisher(cpu, model, data.slice(7, c.n), { structure: 'kfac' })];
    const online = new OnlineEwc(0.5);
    const first = Float64Array.from(theta, (t) => t + 0.1);
    online.add(first, F1);
    online.add(star, F2);
    const anchors = online.anchors();
    expect(anchors.map((a) => a.weight)).toEqual([0.5, 1]);
    expect(anchors.every((a) => a.theta === star)).toBe(true);
    const d = Float64Array.from(theta, (t, i) => t - star[i]!);
    const running = F1.mv(d).map((x, i) => 0.5 * x + F2.mv(d)[i]!);
    expect(ewcPenaltyValue(anchors, 2, theta)).toBeCloseTo(d.reduce((s, x, i) => s + x * running[i]!, 0), 10);
    expect(() => new OnlineEwc(1.5)).toThrow(/\[0, 1\]/);
    expect(p).toBeGreaterThan(0);
  });

  it('refuses a structure without a device penalty, saying what to use', async () => {
    const F = await fisher(cpu, model, data, { structure: 'block' });
    expect(() => ewcPenaltyGradient([{ theta: star, fisher: F }], 1)).toThrow(/diag, kfac and full Fishers; .*ewcPenalty/);
    expect(() => ewcPenaltyGradient([], 1)).toThrow(/at least one anchor/);
  });
});
