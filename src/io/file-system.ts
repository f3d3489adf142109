/**
 * `file://` model saving and loading for Node without tfjs-node (plain @tensorflow/tfjs has no file-system IO
 * handler in Node): `model.save('file://dir')` writes `dir/model.json` and `dir/weights.bin` in the tfjs layers
 * format (the files tfjs-node and tfjs's converter write), and `tf.loadLayersModel('file://dir/model.json')` (or
 * `'file://dir'`) reads them. Registered through tfjs's own IO router (`tf.io.registerSaveRouter` /
 * `registerLoadRouter`); the JSON <-> artifacts conversion is tfjs's (`tf.io.getModelArtifactsForJSON`).
 * Node only.
 */
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';

const SCHEME = 'file://';
const MODEL_JSON = 'model.json';
const WEIGHTS_BIN = 'weights.bin';

/** The directory of a save URL and the model.json path of a load URL. */
function pathOf(url: string): string {
  return resolve(url.slice(SCHEME.length));
}

async function isDirectory(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** Writes `data` to `path` through a temporary file and a rename, so a failed save never leaves half a file. */
async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** An IOHandler that saves into, or loads from, a directory (or a model.json path) on the local file system. */
export function fileSystem(url: string): tf.io.IOHandler {
  const target = pathOf(url);
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) throw new Error(`${url}: saving binary model topologies is not supported`);
      const dir = target.endsWith('.json') ? dirname(target) : target;
      await mkdir(dir, { recursive: true });
      const weights = artifacts.weightData ? new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData)) : new Uint8Array(0);
      const modelJSON: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as {},
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? [] }],
        ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
        ...(artifacts.signature ? { signature: artifacts.signature } : {}),
        ...(artifacts.userDefinedMetadata ? { userDefinedMetadata: artifacts.userDefinedMetadata } : {}),
      };
      // weights first: a model.json never points at weights that are not there yet
      await writeAtomic(join(dir, WEIGHTS_BIN), weights);
      await writeAtomic(join(dir, target.endsWith('.json') ? target.slice(dir.length + 1) : MODEL_JSON), JSON.stringify(modelJSON));
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          modelTopologyBytes: JSON.stringify(artifacts.modelTopology).length,
          weightSpecsBytes: JSON.stringify(artifacts.weightSpecs ?? []).length,
          weightDataBytes: weights.byteLength,
        },
      };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      const jsonPath = (await isDirectory(target)) ? join(target, MODEL_JSON) : target;
      let modelJSON: tf.io.ModelJSON;
      try {
        modelJSON = JSON.parse(await readFile(jsonPath, 'utf8')) as tf.io.ModelJSON;
      } catch (e) {
        throw new Error(`${jsonPath}: not a readable model.json (${(e as Error).message})`);
      }
      if (!modelJSON || typeof modelJSON !== 'object' || !modelJSON.modelTopology || !Array.isArray(modelJSON.weightsManifest)) {
        throw new Error(`${jsonPath}: not a tfjs model.json (modelTopology or weightsManifest missing)`);
      }
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: ArrayBuffer[] = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const file = join(dirname(jsonPath), p);
            const b = await readFile(file).catch((e: Error) => {
              throw new Error(`${file}: weights file of ${jsonPath} not readable (${e.message})`);
            });
            buffers.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
          }
        }
        const data = tf.io.concatenateArrayBuffers(buffers);
        const expected = specs.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1) * (w.dtype === 'float32' || w.dtype === 'int32' ? 4 : 1), 0);
        if (specs.every((w) => !w.quantization) && data.byteLength !== expected) {
          throw new Error(`${jsonPath}: weights are ${data.byteLength} bytes, the manifest describes ${expected}`);
        }
        return [specs, data];
      });
    },
  };
}

let registered = false;

/**
 * Registers the `file://` handlers with tfjs's IO router (idempotent). Skipped when another `file://` handler is
 * registered already (tfjs-node registers its own).
 */
export function registerFileSystemIO(): void {
  if (registered) return;
  registered = true;
  const probe = `${SCHEME}${resolve('.')}`;
  if (tf.io.getSaveHandlers(probe).length > 0 || tf.io.getLoadHandlers(probe).length > 0) return;
  const route = ((url: string | string[]) => (typeof url === 'string' && url.startsWith(SCHEME) ? fileSystem(url) : null)) as Parameters<
    typeof tf.io.registerSaveRouter
  >[0];
  tf.io.registerSaveRouter(route);
  tf.io.registerLoadRouter(route);
}
