/**
 * The registry of reproduced figures, in paper order. A new figure adds its FigureSpec here and the CLI, the index
 * page and the claims table pick it up.
 */
import type { FigureSpec } from '../types';
import { fig2Figure } from './fig2';
import { fig3Figure } from './fig3';
import { fig4Figure } from './fig4';
import { fig5Figure } from './fig5';
import { fig5dfFigure } from './fig5df';
import { fig6 } from './fig6';
import { fig7Figure } from './fig7';
import { fig8Figure } from './fig8';
import { updatesFigure } from './updates';

export const FIGURES: FigureSpec[] = [fig2Figure, fig3Figure, fig4Figure, fig5Figure, fig5dfFigure, fig6, fig7Figure, fig8Figure, updatesFigure];

/** Looks a figure up by id; an unknown id is an error listing the known ones. */
export function figureById(id: string): FigureSpec {
  const spec = FIGURES.find((f) => f.id === id);
  if (!spec) throw new Error(`unknown figure '${id}' (known: ${FIGURES.map((f) => f.id).join(', ')})`);
  return spec;
}
