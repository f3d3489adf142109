/**
 * Layer registration: every parameterised layer a model reports (LayerInfo) gets its Fisher block — the paper's
 * automatic scan of the graph [P §6, App. C] reduced to the layer list the model records.
 *
 *   dense                                         → KroneckerBlock (two factors, bias as homogeneous coordinate)
 *   dense on a flattened [H, W, C] map, selected  → DoublyFactoredBlock (three factors, full bias block)   [P §4]
 *   conv2d                                        → KroneckerBlock, KFC or the cheap App. A factors (opts.conv)
 *   batchnorm                                     → ScaleShiftBlock (full block over [γ; β])
 */
import type { LayerInfo } from '../nn/layers';
import { type ConvApprox, DoublyFactoredBlock, type FisherBlock, KroneckerBlock, ScaleShiftBlock } from './blocks';

export interface RegistryOptions {
  /** conv factors: 'kfc' (Grosse & Martens 2016, CIFAR runs) or 'cheap' (Appendix A, every ImageNet run) */
  conv: ConvApprox;
  /**
   * Which dense layers on a flattened [H, W, C] map use the doubly-factored approximation: those named in `names`,
   * and those with at least `minInputUnits` inputs (AlexNet's fc6: 6·6·256 = 9216). Absent: none.
   */
  doublyFactored?: { names?: string[]; minInputUnits?: number };
  /** EMA decay ε of the factor statistics (default 0.95) */
  decay?: number;
}

/** Whether a dense layer is registered as doubly factored under `opts`. */
export function isDoublyFactored(layer: LayerInfo, opts: RegistryOptions): boolean {
  const df = opts.doublyFactored;
  if (!df || layer.kind !== 'dense' || layer.inputShape.length !== 3) return false;
  if (df.names?.includes(layer.name)) return true;
  return df.minInputUnits !== undefined && layer.inUnits >= df.minInputUnits;
}

/** One Fisher block per layer, in the model's layer order. Parameters may belong to one block only. */
export function registerBlocks(layers: readonly LayerInfo[], opts: RegistryOptions): FisherBlock[] {
  const df = opts.doublyFactored;
  if (df?.names) {
    for (const n of df.names) {
      const l = layers.find((x) => x.name === n);
      if (!l) throw new Error(`doublyFactored.names: no layer named ${n}`);
      if (l.kind !== 'dense' || l.inputShape.length !== 3) {
        throw new Error(`doublyFactored.names: layer ${n} is not a dense layer on a flattened [H, W, C] map`);
      }
    }
  }
  const blocks: FisherBlock[] = layers.map((l) => {
    if (l.kind === 'batchnorm') return new ScaleShiftBlock(l, { decay: opts.decay });
    if (isDoublyFactored(l, opts)) return new DoublyFactoredBlock(l as Extract<LayerInfo, { kind: 'dense' }>, { decay: opts.decay });
    return new KroneckerBlock(l, { conv: opts.conv, decay: opts.decay });
  });
  const owner = new Map<string, string>();
  for (const b of blocks) {
    for (const p of b.params) {
      const prev = owner.get(p);
      if (prev) throw new Error(`parameter ${p} is registered by both ${prev} and ${b.name}`);
      owner.set(p, b.name);
    }
  }
  return blocks;
}
