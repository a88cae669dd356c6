// The demo's embedding space (d = 32), shared by the data command and the app.
// Items: 19 MovieLens genre flags (weighted 1/√n), 7 era slots, popularity, mean rating, bias.
// Queries: the same slots filled from keywords in the query text, plus the bias.
// This is a transparent keyword/metadata encoder for the demo; the engine itself takes any
// host-supplied embeddings (e.g. 384-d MiniLM vectors).

export const DIM = 32;
export const GENRES = ['unknown', 'Action', 'Adventure', 'Animation', "Children's", 'Comedy', 'Crime', 'Documentary', 'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'Musical', 'Mystery', 'Romance', 'Sci-Fi', 'Thriller', 'War', 'Western'];
const ERA0 = 19; // <1950, 1950s, 1960s, 1970s, 1980s, 1990-94, 1995+
const POP = 26;
const RATING = 27;
const BIAS = 28;

export function eraSlot(year) {
  if (!year) return -1;
  if (year < 1950) return 0;
  if (year < 1960) return 1;
  if (year < 1970) return 2;
  if (year < 1980) return 3;
  if (year < 1990) return 4;
  if (year < 1995) return 5;
  return 6;
}

/** Item embedding from metadata and rating statistics. */
export function itemEmbedding({ genres, year }, popularity, meanRating) {
  const e = new Array(DIM).fill(0);
  const gs = genres.filter((g) => GENRES.includes(g));
  for (const g of gs) e[GENRES.indexOf(g)] = 1 / Math.sqrt(gs.length);
  const era = eraSlot(year);
  if (era >= 0) e[ERA0 + era] = 0.7;
  e[POP] = popularity;
  e[RATING] = meanRating;
  e[BIAS] = 1;
  return e;
}

const WORDS = {
  Action: ['action', 'explosive', 'fight', 'fighting', 'exciting', 'adrenaline'],
  Adventure: ['adventure', 'quest', 'journey', 'epic'],
  Animation: ['animated', 'animation', 'cartoon', 'pixar', 'disney'],
  "Children's": ['kids', 'kid', 'children', 'family', 'child'],
  Comedy: ['comedy', 'comedies', 'funny', 'laugh', 'light', 'hilarious', 'lighthearted', 'silly'],
  Crime: ['crime', 'gangster', 'mafia', 'heist', 'mob'],
  Documentary: ['documentary', 'documentaries', 'real', 'true'],
  Drama: ['drama', 'dramas', 'serious', 'emotional', 'moving'],
  Fantasy: ['fantasy', 'magic', 'magical', 'dragons'],
  'Film-Noir': ['noir', 'detective'],
  Horror: ['horror', 'scary', 'spooky', 'frightening', 'terrifying'],
  Musical: ['musical', 'musicals', 'songs', 'singing', 'music'],
  Mystery: ['mystery', 'mysteries', 'whodunit', 'puzzle'],
  Romance: ['romance', 'romantic', 'love', 'date'],
  'Sci-Fi': ['sci-fi', 'scifi', 'space', 'science', 'future', 'aliens', 'alien', 'robots'],
  Thriller: ['thriller', 'thrillers', 'suspense', 'tense', 'gripping'],
  War: ['war', 'battle', 'soldiers', 'military'],
  Western: ['western', 'westerns', 'cowboy', 'cowboys'],
};
const ERAS = [
  [0, ['classic', 'classics', 'old', 'golden', 'black-and-white']],
  [3, ['seventies', '70s']],
  [4, ['eighties', '80s']],
  [6, ['new', 'newest', 'latest', 'recent', 'fresh']],
];

/** Query embedding: keyword slots + popularity prior + bias. Returns {embedding, matched}. */
export function queryEmbedding(text) {
  const words = text.toLowerCase().split(/[^a-z0-9'-]+/).filter(Boolean);
  const e = new Array(DIM).fill(0);
  const matched = [];
  for (const [g, ws] of Object.entries(WORDS)) {
    if (words.some((w) => ws.includes(w))) {
      e[GENRES.indexOf(g)] = 1;
      matched.push(g);
    }
  }
  for (const [slot, ws] of ERAS) {
    if (words.some((w) => ws.includes(w))) {
      e[ERA0 + slot] = 1;
      matched.push(['before 1950', '1950s', '1960s', '1970s', '1980s', 'early 90s', 'late 90s'][slot]);
    }
  }
  e[POP] = 0.5;
  e[RATING] = 0.5;
  e[BIAS] = 1;
  return { embedding: Float32Array.from(e), matched };
}
