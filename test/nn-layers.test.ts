/**
 * The layer functions against independent computations: batch norm over chunks (the paper's rbz) against a
 * hand-written normalisation, and the K-FAC probes (d loss / d probe = Ds) against the analytic softmax derivative
 * and central finite differences.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend';
import { Model, crossEntropy } from '../src/nn/model';
import { buildModel } from '../src/nn/zoo';
import { chunkSizes } from '../src/nn/layers';

beforeAll(async () => {
  await initBackend();
});

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

describe('batch norm with chunks (rbz)', () => {
  it.each([
    [6, 4],
    [8, 4],
    [8, 8],
  ])('normalises each chunk with its own statistics (N=%i, rbz=%i)', (N, rbz) => {
    const C = 3;
    const data = rand(N * C, 7);
    const m = new Model('bn', (L, x) => L.batchNorm('bn', x.reshape([x.shape[0], C]) as tf.Tensor2D), [1, 1, C], C);
    // scale 1, shift 0 at initialisation → output = x̂
    const y = tf.tidy(() => m.forward(tf.tensor4d(data, [N, 1, 1, C]), { training: true, bnChunk: rbz }).logits.arraySync());
    const sizes = chunkSizes(N, rbz);
    expect(sizes.reduce((a, b) => a + b)).toBe(N);
    let start = 0;
    for (const sz of sizes) {
      for (let c = 0; c < C; c++) {
        let mean = 0;
        for (let i = start; i < start + sz; i++) mean += data[i * C + c] / sz;
        let v = 0;
        for (let i = start; i < start + sz; i++) v += (data[i * C + c] - mean) ** 2 / sz;
        for (let i = start; i < start + sz; i++) {
          expect(y[i][c]).toBeCloseTo((data[i * C + c] - mean) / Math.sqrt(v + 1e-3), 4);
        }
      }
      start += sz;
    }
    m.dispose();
  });
});

describe('K-FAC capture: probes give the pre-activation derivatives', () => {
  it('the output layer probe gradient equals (softmax − onehot)/N', () => {
    const model = buildModel({ arch: 'cifarnet', bn: false }, [12, 12, 1], 10, 3);
    const N = 4;
    const x = tf.tensor4d(rand(N * 144, 11), [N, 12, 12, 1]);
    const labels = tf.tensor1d([1, 5, 9, 0], 'int32');
    const shapes = model.preactShapes(N);
    const names = [...shapes.keys()];
    const probes = names.map((n) => tf.zeros(shapes.get(n)!));
    const grads = tf.grads((...ps: tf.Tensor[]) => {
      const r = model.forwardWithCapture(x, new Map(names.map((n, i) => [n, ps[i]])), { training: false });
      return crossEntropy(r.logits, labels);
    })(probes);
    const logits = tf.tidy(() => model.forward(x, { training: false }).logits);
    const p = tf.softmax(logits).arraySync() as number[][];
    const gFc = grads[names.indexOf('fc')].arraySync() as number[][];
    const lab = [1, 5, 9, 0];
    for (let n = 0; n < N; n++)
      for (let k = 0; k < 10; k++) expect(gFc[n][k]).toBeCloseTo((p[n][k] - (k === lab[n] ? 1 : 0)) / N, 5);
    tf.dispose([x, labels, logits, ...probes, ...grads]);
    model.dispose();
  });

  it('conv and batch-norm probe gradients match central finite differences of the loss', () => {
    // a smooth net (tanh, average pooling with 'same' padding, batch norm in training mode) so that finite
    // differences are exact up to float32 round-off: ReLU kinks would make them unreliable
    const model = new Model(
      'smooth',
      (L, x) => {
        let h = L.batchNorm('conv1_bn', L.conv2d('conv1', x, { filters: 6, kernel: 3, bias: false }));
        h = L.avgPool(tf.tanh(h), 3, 2, 'same');
        h = tf.tanh(L.conv2d('conv2', h, { filters: 5, kernel: 3, strides: 2 }));
        return L.dense('fc', h, { units: 10 });
      },
      [8, 8, 1],
      10,
      5,
    );
    const N = 4;
    const x = tf.tensor4d(rand(N * 64, 3), [N, 8, 8, 1]);
    const labels = tf.tensor1d([2, 7, 0, 9], 'int32');
    const shapes = model.preactShapes(N);
    const names = [...shapes.keys()];
    const loss = (ps: tf.Tensor[]) =>
      crossEntropy(model.forwardWithCapture(x, new Map(names.map((n, i) => [n, ps[i]])), { training: true }).logits, labels);
    const probes = names.map((n) => tf.zeros(shapes.get(n)!));
    const g = tf.grads((...ps: tf.Tensor[]) => loss(ps))(probes);
    for (const layer of ['conv1', 'conv1_bn', 'conv2']) {
    const target = names.indexOf(layer);
    // directional derivative along random directions: (L(p + h d) − L(p − h d)) / 2h against ⟨∂L/∂p, d⟩
    const h = 1e-3;
    for (const seed of [1, 2, 3]) {
      const d = tf.tensor(rand(g[target].size, 100 + seed), shapes.get(layer)!);
      const [fd, an] = tf.tidy(() => {
        const plus = probes.map((p, i) => (i === target ? tf.add(p, tf.mul(d, h)) : p));
        const minus = probes.map((p, i) => (i === target ? tf.sub(p, tf.mul(d, h)) : p));
        return [(loss(plus).dataSync()[0] - loss(minus).dataSync()[0]) / (2 * h), tf.sum(tf.mul(g[target], d)).dataSync()[0]];
      });
      expect(Math.abs(an)).toBeGreaterThan(1e-3);
      expect(Math.abs(fd - an)).toBeLessThan(0.01 * Math.abs(an) + 2e-4);
      d.dispose();
    }
    }
    tf.dispose([x, labels, ...probes, ...g]);
    model.dispose();
  });

  it('records the inputs and pre-activations of every weight layer', () => {
    const model = buildModel({ arch: 'googlenet', bn: true, width: 0.1, stem: 'small', stages: [1, 0, 0] }, [8, 8, 1], 10, 1);
    const kinds = new Set(model.layers.map((l) => l.kind));
    expect(kinds).toEqual(new Set(['conv2d', 'batchnorm', 'dense']));
    tf.tidy(() => {
      const r = model.forwardWithCapture(tf.zeros([3, 8, 8, 1]) as tf.Tensor4D, new Map(), { training: true });
      for (const l of model.layers) {
        expect(r.capture.inputs.has(l.name)).toBe(true);
        const s = r.capture.preacts.get(l.name)!;
        expect(s.shape).toEqual(model.preactShapes(3).get(l.name));
        if (l.kind === 'conv2d') expect(r.capture.inputs.get(l.name)!.shape).toEqual([3, ...l.inSize, l.inChannels]);
      }
    });
    model.dispose();
  });
});
