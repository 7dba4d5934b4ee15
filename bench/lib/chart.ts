/** The benchmarks' charts: the SVG chart module moved to src/compare/chart.ts (stlm bench draws with it too). */
export * from '../../src/compare/chart.js';
