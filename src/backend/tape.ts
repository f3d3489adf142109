/**
 * Several backward passes over ONE recorded forward pass.
 *
 * tfjs records a tape per `tf.grads` call, so two gradients of the same forward computation (K-FAC's step: the
 * gradient of the training loss w.r.t. the parameters, and the gradient of the loss of targets sampled from the
 * model w.r.t. the probes on every pre-activation) would cost two forward passes. `gradientsOnOneTape` records the
 * forward once and runs one backward pass per output over the same tape, with tfjs's own tape functions
 * (`getFilteredNodesXToY`, `backpropagateGradients`: the ones `tf.grads` uses), so each pass computes exactly what
 * `tf.grads` would: only the nodes between its `wrt` tensors and its output.
 *
 * It uses the engine's tape hooks (`startTape` / `endTape` / `state.activeTape`), which are internal to
 * @tensorflow/tfjs-core 4.x; test/train-joint.test.ts checks the results against separate `tf.grads` calls.
 */
import * as tf from '@tensorflow/tfjs';
import { backpropagateGradients, getFilteredNodesXToY } from '@tensorflow/tfjs-core/dist/tape';

interface TapeEngine {
  state: { activeTape: { saved?: tf.Tensor[] }[] | null; gradientDepth: number };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
}

/**
 * Runs `forward` once with the tape on. It returns the scalar outputs (and anything else in `extra`, kept out of
 * the tape's disposal); then output i is differentiated w.r.t. `wrt[i]`. Gradients of outputs not connected to a
 * tensor of `wrt[i]` are zeros of its shape. The caller owns every returned tensor.
 */
export function gradientsOnOneTape<E extends tf.TensorContainer>(
  forward: () => { outputs: tf.Scalar[]; extra: E },
  wrt: tf.Tensor[][],
): { values: tf.Scalar[]; grads: tf.Tensor[][]; extra: E } {
  const engine = tf.engine() as unknown as TapeEngine;
  if (engine.state.gradientDepth !== 0) throw new Error('gradientsOnOneTape cannot run inside another gradient computation');
  const [values, extra] = engine.scopedRun(
    () => engine.startTape(),
    () => engine.endTape(),
    () =>
      engine.tidy('forward', () => {
        const r = forward();
        if (r.outputs.length !== wrt.length) throw new Error(`gradientsOnOneTape: ${r.outputs.length} outputs for ${wrt.length} lists of tensors`);
        // the extras escape the tidy like the outputs do
        return [r.outputs, r.extra] as unknown as tf.TensorContainer;
      }) as unknown as [tf.Scalar[], E],
  );
  const tape = engine.state.activeTape ?? [];
  try {
    const grads = tf.tidy(() =>
      values.map((y, i) => {
        const xs = wrt[i]!;
        const filtered = getFilteredNodesXToY(tape as never, xs, y);
        const acc: Record<number, tf.Tensor> = { [y.id]: tf.onesLike(y) };
        backpropagateGradients(acc as never, filtered, (f: Function) => tf.tidy(f as () => tf.Tensor), tf.add as never);
        return xs.map((x) => acc[x.id] ?? tf.zerosLike(x));
      }),
    );
    return { values, grads, extra };
  } finally {
    for (const node of tape) for (const t of node.saved ?? []) t.dispose();
    engine.state.activeTape = null;
  }
}
