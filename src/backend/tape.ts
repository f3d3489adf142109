/**
 * Several backward passes over ONE recorded forward pass.
 *
 * tfjs records a tape per `tf.grads` call, so two gradients of the same forward computation (K-FAC's step: the
 * gradient of the training loss w.r.t. the parameters, and the gradient of the loss of targets sampled from the
 * model w.r.t. the probes on every pre-activation) would cost two forward passes. `gradientsOnOneTape` records the
 * forward once and runs one backward pass per output over the same tape, as `tf.grads` does for its own tape: only
 * the nodes on a path from its `wrt` tensors to its output take part, and each node's gradient function is asked only
 * for the inputs on such a path.
 *
 * It uses the engine's tape hooks (`startTape` / `endTape` / `state.activeTape` and the tape nodes' `gradient`
 * closures), which are internal to @tensorflow/tfjs-core 4.x (tfjs-core's own tape functions are not importable from
 * plain Node: its dist/ modules are ESM in a CommonJS package); test/train-joint.test.ts checks the results against
 * separate `tf.grads` calls, bit for bit.
 */
import * as tf from '@tensorflow/tfjs';

/** A node of the engine's tape (tfjs-core's TapeNode). */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient?: (dys: tf.Tensor[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

/**
 * The nodes on a path from `xs` to `y`, in tape order, each with only the inputs that lie on such a path (so its
 * gradient function is asked for nothing else).
 */
function nodesBetween(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const onPathFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      onPathFromX.add(node.id);
      for (const o of node.outputs) fromX.add(o.id);
    }
  }
  const toY = new Set([y.id]);
  const onPathToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      onPathToY.add(node.id);
      for (const t of Object.values(node.inputs)) toY.add(t.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!onPathFromX.has(node.id) || !onPathToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [name, t] of Object.entries(node.inputs)) if (fromX.has(t.id)) inputs[name] = t;
    out.push({ ...node, inputs });
  }
  return out;
}

/** Accumulates d y / d t for every tensor t of `nodes` into `acc` (which holds d y / d y), walking them backwards. */
function backprop(acc: Map<number, tf.Tensor>, nodes: TapeNode[]): void {
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i]!;
    if (!node.outputs.some((o) => acc.has(o.id))) continue;
    if (!node.gradient) throw new Error(`cannot compute the gradient: kernel ${node.kernelName} has no gradient`);
    const dys = node.outputs.map((o) => acc.get(o.id) ?? tf.zeros(o.shape, o.dtype));
    const grads = node.gradient(dys);
    for (const [name, x] of Object.entries(node.inputs)) {
      const g = grads[name];
      if (!g) throw new Error(`cannot compute the gradient: kernel ${node.kernelName} gives none for its input '${name}'`);
      const dx = tf.tidy(g);
      if (dx.dtype !== 'float32') throw new Error(`the gradient of ${node.kernelName}'s input '${name}' is ${dx.dtype}, not float32`);
      const prev = acc.get(x.id);
      acc.set(x.id, prev ? tf.add(prev, dx) : dx);
      if (prev) prev.dispose();
    }
  }
}

interface TapeEngine {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
}

/**
 * Runs `forward` once with the tape on. It returns the scalar outputs, for each output the tensors to differentiate
 * it by (`wrt[i]`: inputs of the forward, variables, or tensors the forward computed, such as a layer's
 * pre-activation), and anything else in `extra` (kept out of the tape's disposal). Gradients of an output w.r.t. a
 * tensor it does not depend on are zeros of its shape. The caller owns every returned tensor.
 */
export function gradientsOnOneTape<E extends tf.TensorContainer>(
  forward: () => { outputs: tf.Scalar[]; wrt: tf.Tensor[][]; extra: E },
): { values: tf.Scalar[]; grads: tf.Tensor[][]; extra: E } {
  const engine = tf.engine() as unknown as TapeEngine;
  if (engine.state.gradientDepth !== 0) throw new Error('gradientsOnOneTape cannot run inside another gradient computation');
  let wrt: tf.Tensor[][] = [];
  const [values, extra] = engine.scopedRun(
    () => engine.startTape(),
    () => engine.endTape(),
    () =>
      engine.tidy('forward', () => {
        const r = forward();
        if (r.outputs.length !== r.wrt.length) throw new Error(`gradientsOnOneTape: ${r.outputs.length} outputs for ${r.wrt.length} lists of tensors`);
        wrt = r.wrt;
        // the extras escape the tidy like the outputs do (tensors the forward computed that are only differentiated
        // by stay on the tape until the backward passes are done)
        return [r.outputs, r.extra] as unknown as tf.TensorContainer;
      }) as unknown as [tf.Scalar[], E],
  );
  const tape = engine.state.activeTape ?? [];
  try {
    const grads = tf.tidy(() =>
      values.map((y, i) => {
        const xs = wrt[i]!;
        const acc = new Map<number, tf.Tensor>([[y.id, tf.onesLike(y)]]);
        backprop(acc, nodesBetween(tape, xs, y));
        return xs.map((x) => acc.get(x.id) ?? tf.zerosLike(x));
      }),
    );
    return { values, grads, extra };
  } finally {
    for (const node of tape) for (const t of node.saved ?? []) t.dispose();
    engine.state.activeTape = null;
  }
}
