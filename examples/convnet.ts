/**
 * A small Fashion-MNIST convnet, defined the standard tfjs-layers way (nothing dkfac-specific): three 3×3
 * convolutions with max pooling, a batch-norm layer and a softmax classifier. Shared by the Node example
 * (fashion-mnist-layers.ts) and the browser demo (demo/), which train it with K-FAC and SGD.
 */
import * as tf from '@tensorflow/tfjs';

export function smallConvnet(seed = 0): tf.Sequential {
  const init = (k: number) => tf.initializers.heNormal({ seed: seed * 10 + k });
  return tf.sequential({
    name: 'fashion_convnet',
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 16, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', kernelInitializer: init(2) }),
      tf.layers.batchNormalization(),
      tf.layers.activation({ activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(3) }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: init(4) }),
    ],
  });
}
