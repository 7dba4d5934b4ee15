/**
 * The text side of a generation loop (generate.ts, generate-pooled.ts): each sampled token goes through
 * a UTF-8 stream decoder (text never splits a character) and the stop-string matcher (a stop string is
 * never emitted); what comes out is what the loop yields, and it is collected in `text`.
 */
import { TokenStreamDecoder, type Tokenizer } from '../tokenizers/tokenizer.js';
import { StopMatcher } from './stop.js';

/** Text to emit now (possibly '') and whether a stop string was hit. */
export interface StreamPiece {
  text: string;
  stopped: boolean;
}

/** Turns generated tokens into streamed text, watching for stop strings. */
export class TextStream {
  /** All text emitted so far. */
  text = '';
  private readonly decoder: TokenStreamDecoder;
  private readonly stop: StopMatcher;

  constructor(tok: Tokenizer, stops: readonly string[]) {
    this.decoder = new TokenStreamDecoder(tok);
    this.stop = new StopMatcher(stops);
  }

  /** Feeds one token (`afterBos`: see TokenStreamDecoder.push); returns what to emit now. */
  push(id: number, afterBos = false): StreamPiece {
    const piece = this.stop.push(this.decoder.push(id, afterBos));
    this.text += piece.text;
    return piece;
  }

  /**
   * Ends the stream when generation ended without a stop string: the text held back by the decoder
   * and the matcher, and whether that held-back text completed a stop string after all.
   */
  finish(): StreamPiece {
    const tail = this.stop.push(this.decoder.flush());
    const rest = tail.text + (tail.stopped ? '' : this.stop.flush());
    this.text += rest;
    return { text: rest, stopped: tail.stopped };
  }
}
