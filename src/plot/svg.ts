/**
 * Renders a Vega-Lite chart to an SVG document, headless: compiled and drawn
 * by Vega in Node. Vega and Vega-Lite load on the first chart, not with the
 * module: they take about 0.4 s to load, which every `fisher` command would
 * otherwise pay at start-up.
 */
import type * as vegaLite from 'vega-lite';

export type ChartSpec = vegaLite.TopLevelSpec;

export async function renderSvg(spec: ChartSpec): Promise<string> {
  const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
