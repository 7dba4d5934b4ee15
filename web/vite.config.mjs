// Builds the playground (web/) into static files in dist/playground: `npm run build:web`.
// Relative URLs (base './'), so the folder works as-is from any static host and any sub-path.
import { fileURLToPath } from 'node:url';

// The engine loads Node's modules on demand (files, threads, the native addon) behind runtime checks that
// are false in a browser: they stay unresolved imports the page never reaches.
const rolldownOptions = {
  external: [/^node:/],
  onwarn(warning, warn) {
    if (warning.code === 'INEFFECTIVE_DYNAMIC_IMPORT') return; // the same chunk either way
    warn(warning);
  },
};

const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default {
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../dist/playground', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // The embedded model and the kernels' WebAssembly (base64 in a module) are large by design.
    chunkSizeWarningLimit: 4096,
    reportCompressedSize: false,
    rolldownOptions,
  },
  worker: { format: 'es', rolldownOptions },
  // `vite` (dev) and `vite preview` serve the page cross-origin isolated too, as `stlm serve` does.
  server: { headers: isolation },
  preview: { headers: isolation },
};
