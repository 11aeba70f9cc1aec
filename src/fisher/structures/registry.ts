/** Every structure of DESIGN.md §1 this version computes, by name: adding one is its module and one line here. */
import type { FisherStructure } from '../options.js';
import { block } from './block.js';
import { diag } from './diag.js';
import { ekfac } from './ekfac.js';
import { full } from './full.js';
import { kfac } from './kfac.js';
import { lowrank } from './lowrank.js';
import type { StructureType } from './structure.js';

export const STRUCTURE_TYPES: ReadonlyMap<FisherStructure, StructureType> = new Map([diag, full, block, kfac, ekfac, lowrank].map((s) => [s.name, s]));
