export class WordPiece {
  constructor(tokens: string[], opts?: { lowercase?: boolean; maxLength?: number });
  static fromText(text: string, opts?: { lowercase?: boolean; maxLength?: number }): WordPiece;
  readonly vocab: Map<string, number>;
  readonly tokens: string[];
  basic(text: string): string[];
  wordpiece(word: string): string[];
  tokenize(text: string): string[];
  encode(text: string, opts?: { maxLength?: number }): { ids: BigInt64Array; mask: BigInt64Array; tokens: string[] };
}
export default WordPiece;
