// The benchmark report's chart template: bars proportional to their values, one colour per series,
// labels escaped.
import { barChartSvg } from "../../../bench/report/barChart.ts";

const widths = (svg: string) =>
  [...svg.matchAll(/<rect x="\d+" y="\d+" width="([\d.]+)" height="16"/g)].map((m) => Number(m[1]));

test("bars are proportional to their values, the largest filling the plot", () => {
  const svg = barChartSvg({
    title: "t",
    unit: "u",
    groups: [
      {
        label: "a",
        bars: [
          { series: "x", value: 100 },
          { series: "y", value: 50 },
        ],
      },
      { label: "b", bars: [{ series: "x", value: 25 }] },
    ],
  });
  const [x, y, z] = widths(svg);
  expect(x).toBeGreaterThan(0);
  expect(y! / x!).toBeCloseTo(0.5, 2);
  expect(z! / x!).toBeCloseTo(0.25, 2);
  expect(svg).toContain(">100<");
});

test("a series keeps its colour across groups, and labels are escaped", () => {
  const svg = barChartSvg({
    title: "<b>",
    unit: "a&b",
    groups: [
      {
        label: "one",
        bars: [
          { series: "s<1>", value: 1 },
          { series: "s2", value: 2 },
        ],
      },
      { label: "two", bars: [{ series: "s<1>", value: 3 }] },
    ],
  });
  const fills = [...svg.matchAll(/height="16" fill="(#[0-9a-f]+)"/g)].map((m) => m[1]);
  expect(fills[0]).toBe(fills[2]);
  expect(fills[0]).not.toBe(fills[1]);
  expect(svg).not.toContain("<b>");
  expect(svg).toContain("s&lt;1&gt;");
  expect(svg).toContain("a&amp;b");
});
