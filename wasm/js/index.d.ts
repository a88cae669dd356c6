// Curated types of sona-engine (the raw wasm-bindgen .d.ts files use `any`).

/** The six recommendation strategies a query can be routed to. */
export type Route =
  | 'gnn_similarity'
  | 'vector_search'
  | 'mood_matching'
  | 'catalog_freshness'
  | 'availability_check'
  | 'personalized_hybrid';

export interface RouteResult {
  /** The route to use (the registry's fallback route when `fellBack`). */
  route: Route;
  /** Probability of the model's top route. */
  confidence: number;
  /** Probability per route (sums to 1). */
  scores: Record<Route, number>;
  /** True when `confidence` was below the top route's accuracy threshold. */
  fellBack: boolean;
  /** The model's top route (equals `route` unless `fellBack`). */
  originalRoute: Route;
}

export interface ModelChoice {
  modelId: string;
  estimatedCost: number;
  estimatedLatencyMs: number;
  expectedAccuracy: number;
  estimatedTokens: number;
  requiredAccuracy: number;
}

/** camelCase overrides of sona-core's PersonalizeConfig (all optional). */
export interface PersonalizeOptions {
  d?: number;
  rank?: number;
  alpha?: number;
  initScale?: number;
  seed?: number;
  watchCompleteStrength?: number;
  ratingMaxStrength?: number;
  watchStartStrength?: number;
  searchClickStrength?: number;
  skipStrength?: number;
  watchCompleteThreshold?: number;
  baseLr?: number;
  maxInteractions?: number;
  minLrFraction?: number;
  stepsPerAdaptation?: number;
  /** ≤ 1024. */
  negativesPerObservation?: number;
  /**
   * 1..=4096. Together with `negativesPerObservation` (k) and `d` it must keep
   * (maxPending² / 4 + k · maxPending) · d ≤ 2^26 floats (256 MiB of training
   * pairs per adaptation); `load` rejects settings beyond that.
   */
  maxPending?: number;
  ewcLambda?: number;
  fisherDecay?: number;
  fisherScale?: 'raw' | 'mean_one';
  ewcAnchor?: 'consolidated' | 'initial';
  minInteractions?: number;
  minIntervalSecs?: number;
  minSignal?: number;
  dtype?: 'f32' | 'f16';
  fisherStorage?: 'separable' | 'full';
}

export interface AttentionPick {
  /** Mechanism name from sona-core's attention registry. */
  mechanism: string;
  /** Mixing weight; the three weights sum to 1. */
  weight: number;
}

export interface LoadOptions {
  /** The router model file (e.g. models/router.bin). */
  router: Uint8Array;
  /** The attention selector model (e.g. models/attention-selector.bin). */
  attention?: Uint8Array;
  personalize?: PersonalizeOptions;
  /** Default "viewer". */
  userId?: string;
  /** Bytes from `saveState()`. */
  state?: Uint8Array;
}

export interface CatalogItem {
  id: string;
  title: string;
  genres?: string[];
  year?: number | null;
  platforms?: string[];
}

export interface Catalog {
  items: CatalogItem[];
  /** items.length × dim floats, row-major. */
  embeddings: Float32Array;
  /** Related titles per id with a weight > 0 (e.g. co-watch counts): `{ [id]: [[otherId, weight], …] }`.
   * Titles without a list use the nearest catalog embeddings (cosine) as neighbours. */
  related?: Record<string, Array<[string, number]>>;
}

/** The five fused strategies. */
export type Strategy = 'cf' | 'content' | 'graph' | 'context' | 'fresh';

/** When and where the viewer asks; every key optional (only given factors are used). */
export interface RecommendContext {
  /** 0..23, local time. */
  hourOfDay?: number;
  /** 0 = Monday .. 6 = Sunday. */
  dayOfWeek?: number;
  device?: Device;
}

export interface RecommendRequest {
  /** Routed (the route picks the strategy weights); its words are matched against genres,
   * years and (on title-seeking routes) titles. */
  query?: string;
  /** The query embedding (dim floats); without it the viewer's profile (recently liked
   * titles) stands in for the taste strategy. */
  embedding?: Float32Array;
  context?: RecommendContext;
  /** Default 10. */
  k?: number;
  /** Content ids never to return. */
  exclude?: string[];
  /** Unix seconds (for "New this year"); default now. */
  now?: number;
}

export interface StrategyContribution {
  strategy: Strategy;
  /** 1-based rank in that strategy's list. */
  rank: number;
  /** weight / (60 + rank). */
  contribution: number;
}

export interface RecommendedItem {
  id: string;
  title: string;
  genres: string[];
  year: number | null;
  /** Weighted reciprocal rank fusion: Σ weight / (60 + rank) over the strategies listing it
   * (0 for titles that only fill a short list). */
  score: number;
  /** ⟨Wq, e⟩ with the shared tiers (q: the query embedding, else the profile); null without either. */
  queryScore: number | null;
  /** What this viewer's learned tier adds: ⟨W′q, e⟩ − queryScore. */
  personalScore: number | null;
  /** Largest contribution first. */
  strategies: StrategyContribution[];
  /** "Because you watched …", "Similar to …", "New this year", "Matches Comedy", "You often watch … at night", "Fits your taste …". */
  explanation: string;
}

export interface RecommendResult {
  route: RouteResult | null;
  /** The strategy weights used (chosen by the route). */
  weights: Record<Strategy, number>;
  items: RecommendedItem[];
}

export type InteractionType = 'search_click' | 'watch_start' | 'watch_complete' | 'rating' | 'skip';
export type Device = 'tv' | 'mobile' | 'tablet' | 'desktop' | 'web' | 'other';

export interface InteractionContext {
  hourOfDay?: number;
  dayOfWeek?: number;
  device?: Device;
  moods?: string[];
}

export interface Interaction {
  contentId: string;
  type: InteractionType;
  /** 1..5 stars, only for type "rating". */
  rating?: number;
  context?: InteractionContext;
  /** Unix seconds; default now. */
  now?: number;
  /** Query embedding the title was shown for; default: the last recommend() embedding, else the title's own. */
  embedding?: Float32Array;
}

export type Decision =
  | 'adapted'
  | 'noTrainingPairs'
  | { waitingForInteractions: { have: number; need: number } }
  | { waitingForTime: { remainingSecs: number } }
  | { waitingForSignal: { have: number; need: number } };

export interface UpdateOutcome {
  adapted: boolean;
  decision: Decision;
  strength: number;
  buffered: number;
  pairs: number;
  lr: number | null;
  lossBefore: number | null;
  lossAfter: number | null;
  ewcPenalty: number | null;
}

export interface AdapterStats {
  userId: string;
  d: number;
  rank: number;
  interactionCount: number;
  adaptations: number;
  lastUpdated: number | null;
  lastAdaptation: number | null;
  pendingInteractions: number;
  buffered: number;
  pendingSignal: number;
  updateNorm: number;
  globalUpdateNorm: number;
  fisherMass: number;
  fisherUpdates: number;
  globalVersion: number;
  trainedSamples: number;
  lastLoss: number | null;
  nextLr: number;
}

export interface UpdateSummary {
  userId: string;
  globalVersion: number;
  d: number;
  rank: number;
  alpha: number;
  scale: number;
  sampleCount: number;
}

/** Every method throws an `Error` with a clear message on bad input; nothing changes then. */
export declare class Engine {
  /** Same as `Engine.load({ router })`. */
  constructor(router: Uint8Array);
  static load(options: LoadOptions): Engine;
  /** Summary of an `exportUpdate()` payload. */
  static decodeUpdate(bytes: Uint8Array): UpdateSummary;
  readonly dim: number;
  readonly userId: string;
  readonly catalogSize: number;
  route(text: string): RouteResult;
  routeEmbedding(embedding: Float32Array): RouteResult;
  selectModel(route: Route, complexity: number, budget: number): ModelChoice;
  /** Top three attention mechanisms for a query (needs `attention` in Engine.load). */
  selectAttention(text: string): AttentionPick[];
  adaptEmbeddings(embedding: Float32Array): Float32Array;
  adaptationMagnitude(embedding: Float32Array): number;
  loadCatalog(catalog: Catalog): number;
  recommend(request: RecommendRequest): RecommendResult;
  recordInteraction(interaction: Interaction): UpdateOutcome;
  /** Learn from buffered interactions now, ignoring the thresholds. */
  flush(now?: number): UpdateOutcome;
  stats(): AdapterStats;
  /** Sealed MessagePack AdapterUpdate for the sync server. */
  exportUpdate(): Uint8Array;
  /** Install a newer global tier (sealed GlobalAdapter bytes); returns its version. */
  applyGlobal(bytes: Uint8Array): number;
  saveState(): Uint8Array;
  loadState(bytes: Uint8Array): void;
  /** Release the wasm memory of this engine. */
  free(): void;
}

/** Load the WebAssembly (browser: fetches it; Node: already loaded). Resolves to the backend. */
export declare function init(options?: { simd?: boolean; wasmUrl?: string | URL }): Promise<Backend>;
export type Backend = 'simd128' | 'scalar';
/** The backend in use, or null before init() in the browser. */
export declare function backend(): Backend | null;
export declare function simdSupported(): boolean;
