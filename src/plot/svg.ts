/** Renders a Vega-Lite chart to an SVG document, headless: compiled and drawn by Vega in Node. */
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

export type ChartSpec = vegaLite.TopLevelSpec;

export async function renderSvg(spec: ChartSpec): Promise<string> {
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
