// A horizontal grouped bar chart as SVG, from a small template: no charting dependency for two
// charts of a dozen bars. Every number and label comes from the data; nothing is drawn by hand.

export interface BarGroup {
  label: string;
  bars: { series: string; value: number }[];
}

export interface BarChart {
  title: string;
  unit: string;
  groups: BarGroup[];
}

const COLOURS = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#c53030", "#718096"];
const WIDTH = 720;
const LABEL = 190;
const BAR = 16;
const GAP = 4;
const GROUP_GAP = 14;
const TOP = 56;

const escape = (text: string) =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");

const format = (value: number) =>
  value >= 100 ? Math.round(value).toLocaleString("en-US") : String(Math.round(value * 10) / 10);

export function barChartSvg({ title, unit, groups }: BarChart): string {
  const series = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.series)))];
  const max = Math.max(1, ...groups.flatMap((g) => g.bars.map((b) => b.value)));
  const plot = WIDTH - LABEL - 90;
  const parts: string[] = [];
  let y = TOP;
  for (const group of groups) {
    const height = group.bars.length * (BAR + GAP) - GAP;
    parts.push(
      `<text x="${LABEL - 10}" y="${y + height / 2 + 4}" text-anchor="end" class="group">${escape(group.label)}</text>`,
    );
    for (const bar of group.bars) {
      const width = Math.max(1, (bar.value / max) * plot);
      const colour = COLOURS[series.indexOf(bar.series) % COLOURS.length];
      parts.push(
        `<rect x="${LABEL}" y="${y}" width="${width.toFixed(1)}" height="${BAR}" fill="${colour}"><title>${escape(
          `${group.label}, ${bar.series}: ${format(bar.value)} ${unit}`,
        )}</title></rect>`,
        `<text x="${(LABEL + width + 6).toFixed(1)}" y="${y + BAR - 4}" class="value">${format(bar.value)}</text>`,
      );
      y += BAR + GAP;
    }
    y += GROUP_GAP - GAP;
  }
  // The legend runs along the top, wrapping; ~7 px a character at 12 px.
  const legend: string[] = [];
  let lx = LABEL;
  let ly = 30;
  series.forEach((name, i) => {
    const width = 30 + name.length * 7;
    if (lx + width > WIDTH && lx > LABEL) {
      lx = LABEL;
      ly += 18;
    }
    legend.push(
      `<rect x="${lx}" y="${ly}" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/><text x="${lx + 18}" y="${ly + 10}" class="legend">${escape(name)}</text>`,
    );
    lx += width;
  });
  const shift = ly - 30;
  const height = y + 10 + shift;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="${escape(title)}">`,
    `<style>text{font-family:system-ui,sans-serif;font-size:12px;fill:#1a202c}.title{font-size:14px;font-weight:600}.value{fill:#4a5568}</style>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="20" class="title">${escape(`${title} (${unit})`)}</text>`,
    ...legend,
    `<g transform="translate(0 ${shift})">`,
    ...parts,
    `</g>`,
    `</svg>`,
    "",
  ].join("\n");
}
