import { createRequire } from 'node:module';

/** The package's version (package.json), the same from the sources and from the build in dist/. */
export const VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string })
  .version;
