// A TypeScript consumer of sona-engine, compiled with `tsc --noEmit` in the Node tests.
import { Engine, init, backend, type RecommendResult, type Route, type Strategy, type UpdateOutcome } from 'sona-engine';

export async function demo(router: Uint8Array, items: { id: string; title: string }[], emb: Float32Array): Promise<string> {
  const b = await init();
  const which: 'simd128' | 'scalar' | null = backend();
  const plain: Engine = new Engine(router);
  plain.free();
  const engine: Engine = Engine.load({ router, userId: 'ts', personalize: { d: 32, rank: 4, minIntervalSecs: 0 } });
  engine.loadCatalog({ items, embeddings: emb });
  engine.loadCatalog({ items, embeddings: emb, related: { [items[0].id]: [[items[1].id, 2]] } });
  const r = engine.route('movies like heat');
  const picks = engine.selectAttention('movies like heat');
  const w: number = picks[0].weight + picks.length;
  const route: Route = r.route;
  const conf: number = r.confidence + r.scores.vector_search;
  const choice = engine.selectModel(route, 0.3, 1.0);
  const out: RecommendResult = engine.recommend({ query: 'something funny', embedding: new Float32Array(engine.dim), k: 5 });
  const first = out.items[0];
  const fused: RecommendResult = engine.recommend({ query: "what's new", context: { hourOfDay: 21, dayOfWeek: 4, device: 'tv' }, k: 3, now: 1717200000 });
  const top: Strategy | undefined = fused.items[0]?.strategies[0]?.strategy;
  const wFresh: number = fused.weights.fresh;
  const taste: number | null = fused.items[0]?.personalScore ?? null;
  // @ts-expect-error unknown device
  engine.recommend({ context: { device: 'toaster' } });
  // @ts-expect-error recommend context has no moods
  engine.recommend({ context: { moods: ['cozy'] } });
  const outcome: UpdateOutcome = engine.recordInteraction({ contentId: first.id, type: 'rating', rating: 5, context: { device: 'tv', hourOfDay: 20 } });
  const adapted: Float32Array = engine.adaptEmbeddings(new Float32Array(engine.dim));
  const update: Uint8Array = engine.exportUpdate();
  const summary = Engine.decodeUpdate(update);
  const state: Uint8Array = engine.saveState();
  engine.loadState(state);
  // @ts-expect-error route() takes a string
  engine.route(42);
  // @ts-expect-error unknown interaction type
  engine.recordInteraction({ contentId: 'x', type: 'like' });
  // @ts-expect-error unknown route name
  engine.selectModel('teleport', 0.5, 1);
  engine.free();
  return `${b} ${which} ${conf} ${choice.modelId} ${first.explanation} ${outcome.adapted} ${adapted.length} ${summary.sampleCount} ${out.route?.fellBack} ${w} ${picks[0].mechanism} ${top} ${wFresh} ${taste}`;
}
