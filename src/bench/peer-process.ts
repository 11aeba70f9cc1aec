/**
 * One peer's whole process, for `fisher bench --whole-process`: what a
 * command-line user of the peer pays to get the diagonal empirical Fisher
 * of an MLP into a file. It starts Node, reads the model and the data,
 * loads the peer library, computes once (the peer's first call: its
 * compiles included) and writes the diagonal. Built as its own entry
 * (dist/peer-process.js), so the peer does not pay for loading fisher-gpu's
 * command line; it shares only the file readers with it.
 *
 *   node dist/peer-process.js PEER MODEL.json WEIGHTS DATA OUT
 *
 * PEER is one of PEER_PROCESSES. Prints its phases on stdout as one JSON
 * line, {"phases": [[name, seconds], …]}: start-up (Node and this script),
 * reading, loading the library, computing (its compiles included), writing.
 */
import { writeFile } from 'node:fs/promises';
import { webgpuInstance } from '../gpu/device.js';
import { encodeSafetensors } from '../io/safetensors.js';
import { Dataset } from '../model/data.js';
import { Network } from '../model/network.js';
import { loadPeerProcess, PEER_PROCESSES, type PeerProcess } from './peers.js';

let gpu: GPU | undefined;

async function main(argv: string[]): Promise<[string, number][]> {
  // The process's clock starts with the process: the first phase is Node's start and this script's.
  let last = performance.now();
  const phases: [string, number][] = [['start-up', last / 1000]];
  const mark = (name: string) => {
    const now = performance.now();
    phases.push([name, (now - last) / 1000]);
    last = now;
  };
  const [peer, modelPath, weightsPath, dataPath, out] = argv;
  if (!peer || !(peer in PEER_PROCESSES) || !out) {
    throw new Error(`usage: peer-process.js ${Object.keys(PEER_PROCESSES).join('|')} MODEL.json WEIGHTS DATA OUT`);
  }
  const model = await Network.load(modelPath!, weightsPath!);
  const data = await Dataset.load(dataPath!, model);
  mark('reading');
  // Held for the process's life: Dawn crashes if its instance is collected while a device lives.
  gpu = peer === 'tfjs-webgpu' ? await webgpuInstance() : undefined;
  const compute = await loadPeerProcess(peer as PeerProcess, model, gpu);
  mark('loading the library');
  const diag = await compute(data);
  mark('computing');
  await writeFile(out, encodeSafetensors([['diag', { dtype: 'F32', shape: [diag.length], data: diag }]]));
  mark('writing');
  return phases;
}

try {
  const phases = await main(process.argv.slice(2));
  process.stdout.write(`${JSON.stringify({ phases })}\n`);
  // Dawn's instance can keep the event loop alive after the work is done.
  process.exit(0);
} catch (e) {
  process.stderr.write(`peer-process: ${(e as Error).message}\n`);
  process.exit(1);
}
