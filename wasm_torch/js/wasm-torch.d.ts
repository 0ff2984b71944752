// Types for wasm-torch.mjs (the wasm-torch/1 artifact runtime) and wasm-torch-worker.mjs.

export type DType = "float32" | "int64" | "int32" | "uint8" | "int8" | "bool";
export type Dim = number | string;
export type TypedArray =
  | Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array
  | Uint32Array | Uint16Array | Uint8Array | Uint8ClampedArray;
export type InputValue = TypedArray | number[] | bigint[] | boolean[] | { data: TypedArray | number[]; shape?: number[] };

export interface TensorSpec { name: string; dtype: DType; shape: Dim[]; offset: number }
export interface SymbolSpec { name: string; min: number; max: number; input: string; axis: number }
export interface Manifest {
  format: "wasm-torch/1";
  name: string;
  entry: string;
  symbols?: SymbolSpec[];
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  memory: { weights_bytes: number; arena_bytes: number; align: number; [k: string]: number };
  files: Record<string, { sha256: string; bytes: number }>;
  [k: string]: unknown;
}
export interface Output { data: Float32Array | BigInt64Array | Int32Array | Uint8Array | Int8Array; shape: number[]; dtype: DType }
export interface Bytes { manifest: number; wasm: number; weights: number }
export interface LoadOptions {
  verify?: boolean; fetch?: typeof fetch; memoryLimit?: number;
  /** intra-op threads (default: the cores, at most 8); falls back to 1 with a console warning where threads cannot run */
  threads?: number;
  /** "auto" (fastest the engine supports), "simd128" (bit-identical to model.wasm everywhere) or a build's name */
  variant?: string;
  /** URL of wasm-torch-helper.mjs (default: next to wasm-torch-pool.mjs) */
  helperUrl?: string | URL;
}
export interface VariantSpec { name: string; file: string; features: string[]; threads: boolean; deterministic: boolean; stack_bytes: number; max_threads: number }
export interface ThreadStats { threads: number; chunks: number[]; jobs: number }
export interface RunOptions { shapes?: Record<string, number[]>; copy?: boolean }
export interface Stats {
  calls: number; totalMs: number; lastMs: number; meanMs: number;
  memoryBytes: number; weightsBytes: number; arenaBytes: number; loadMs: number; bytes: Bytes;
  variant: string; threads: number;
}
export interface Parts {
  manifest: Manifest; module: WebAssembly.Module; weights: Uint8Array; base: string; bytes: Bytes; fetchMs: number;
  variant: VariantSpec; threads: number; heapBase: number | null;
}

export class WasmTorchError extends Error {}
export class ArtifactError extends WasmTorchError {}
export class IntegrityError extends WasmTorchError {}
export class InputError extends WasmTorchError {}
export class MemoryLimitError extends WasmTorchError {}
export class TrapError extends WasmTorchError {}
export class UnsupportedError extends WasmTorchError {}
export class ThreadsError extends WasmTorchError {}

export const FORMAT: "wasm-torch/1";
export const DTYPES: Record<DType, { new (buf: ArrayBufferLike, off: number, len: number): Output["data"] }>;
export function evalDim(expr: Dim, syms: Record<string, number>): number;
export function simdSupported(): boolean;
export function sha256(bytes: ArrayBuffer | Uint8Array): Promise<string>;
export function fetchArtifact(src: string | URL, opts?: LoadOptions): Promise<Parts>;
export function load(src: string | URL, opts?: LoadOptions): Promise<WasmTorch>;

export class WasmTorch {
  static loadInWorker(src: string | URL, opts?: WorkerOptions): Promise<WorkerModel | WasmTorch>;
  static load(src: string | URL, opts?: LoadOptions): Promise<WasmTorch>;
  static fromParts(parts: Parts, opts?: LoadOptions): Promise<WasmTorch>;
  readonly manifest: Manifest;
  readonly name: string;
  readonly inputs: TensorSpec[];
  readonly outputs: TensorSpec[];
  readonly symbols: SymbolSpec[];
  readonly W: number;
  readonly A: number;
  readonly memoryBytes: number;
  loadMs: number;
  bytes: Bytes;
  run(inputs: Record<string, InputValue>, opts?: RunOptions): Promise<Record<string, Output>>;
  runSync(inputs: Record<string, InputValue>, opts?: RunOptions): Record<string, Output>;
  stats(): Stats;
  /** intra-op threads running each call, and the build */
  readonly threads: number;
  readonly variant: string;
  threadStats(clear?: boolean): ThreadStats;
  close(): void;
}
export interface WorkerOptions extends LoadOptions { workers?: number; workerUrl?: string | URL }
/** One worker with intra-op threads (`threads`), or `workers` single-threaded instances. */
/** A model in Web Workers: same run() contract, never blocks the page. */
export class WorkerModel {
  readonly manifest: Manifest;
  readonly name: string;
  readonly inputs: TensorSpec[];
  readonly outputs: TensorSpec[];
  /** independent instances (parallel runs) */
  readonly workers: number;
  /** intra-op threads per worker */
  threads: number;
  variant: string;
  readonly shared: boolean;
  readonly isolated: boolean;
  bytes: Bytes;
  loadMs: number;
  memoryBytes: number;
  workerResources: [string, number][];
  run(inputs: Record<string, InputValue>, opts?: RunOptions): Promise<Record<string, Output>>;
  stats(): Promise<Stats[]>;
  threadStats(clear?: boolean): Promise<ThreadStats[]>;
  terminate(): void;
}
export function loadInWorker(src: string | URL, opts?: WorkerOptions): Promise<WorkerModel | WasmTorch>;
export default WasmTorch;
