// WGSL files are imported as text: esbuild's `text` loader in the build,
// a small plugin in vitest.config.ts for the tests.
declare module '*.wgsl' {
  const source: string;
  export default source;
}

// wgsl_reflect's package.json points Node at a CommonJS file under
// "type": "module"; the ES module build is the one that loads.
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
